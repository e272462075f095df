"""Allocation in the store alone: one arrival split over a SKU's queue of 1k, 10k, 100k lines.

No Temporal here: this is the transaction a receipt's workflow runs (`stock.record_receipt`),
timed on SQLite and on PostgreSQL. The queue is loaded with one bulk insert, behind a purchase
order that covers it; then arrivals of 1, 10 and 100 units (one unit per line) each allocate
that many lines, five times per size, and the median is reported. Beside it, the cost of
queueing one more line at the back (`stock.record_line`, which dates the line from the lines
ahead of it) and of recomputing every waiting line's ETA (`supply.refresh_etas`, after a
purchase order changes), and of one metrics scrape (`store.metrics.collect`).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert

from bench.scenarios import line_body
from bench.stack import say
from domain.line.input import LineInput
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest, PurchaseOrderRequest, ReceiptRequest
from domain.stock import PurchaseOrderInput, ReceiptInput
from store import demand, metrics, stock, supply
from store.db import Database
from store.tables import LineRow, SkuRow

ARRIVALS = (1, 10, 100)
REPEATS = 5
RECEIVING = timedelta(days=1)


@contextmanager
def fresh_store(backend: str, folder: Path, postgres_admin_url: str) -> Iterator[Database]:
    """An empty store of its own: a new SQLite file, or a new PostgreSQL database dropped after."""
    if backend == "sqlite":
        db = Database(f"sqlite:///{folder / f'allocation-{uuid.uuid4().hex[:8]}.db'}")
        db.create_schema()
        try:
            yield db
        finally:
            db.dispose()
        return
    name = f"backorders_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}")
    try:
        db.create_schema()
        yield db
    finally:
        db.dispose()
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _request(order_id: str, sku: str, ordered_at: datetime) -> BackorderRequest:
    body = line_body(order_id, sku) | {"ordered_at": ordered_at.isoformat()}
    return BackorderRequest.model_validate(body)


def load_queue(db: Database, sku: str, lines: int) -> None:
    """The SKU, a purchase order covering twice its queue (so that every line has a date to
    compute), and `lines` waiting lines of one unit each, inserted in bulk."""
    start = datetime.now(UTC) - timedelta(days=1)
    request_json = _request("template", sku, start).model_dump_json()
    with db.transaction() as session:
        session.add(SkuRow(sku=sku, name=f"Product {sku}"))
    order = PurchaseOrderRequest(sku=sku, quantity=2 * lines, expected_at=start + timedelta(days=9))
    supply.apply_purchase_order(
        db, PurchaseOrderInput(supplier_id="acme", po_id="po-1", order=order)
    )
    rows: list[dict[str, Any]] = []
    for index in range(lines):
        ordered_at = start + timedelta(milliseconds=index)
        rows.append(
            {
                "key": f"backorder:q{index:07d}:1",
                "order_id": f"q{index:07d}",
                "line_id": "1",
                "sku": sku,
                "quantity": 1,
                "state": "waiting",
                "waiting": True,
                "ship_by": ordered_at + timedelta(days=3),
                "ordered_at": ordered_at,
                "channel": "web",
                "ship_policy": "partial",
                "unit_price": "24.00",
                "currency": "USD",
                "customer_id": "c-1",
                "customer_tier": "standard",
                "request_json": request_json,
                "request_hash": "0" * 64,
                "created_at": ordered_at,
                "updated_at": ordered_at,
            }
        )
        if len(rows) == 5000 or index == lines - 1:
            with db.transaction() as session:
                session.connection().execute(insert(LineRow), rows)
            rows = []
    with db.transaction() as session:
        # The bulk insert bypasses the store's running sum of waiting demand, as a migration's
        # backfill would: set it from the lines.
        demand.recount(session, sku)
    # Fresh statistics and, on PostgreSQL, the visibility map that lets index-only scans skip
    # the table: what autovacuum keeps for a table that grew gradually.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        vacuum = "VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"
        connection.exec_driver_sql(vacuum)


def timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return (time.perf_counter() - began) * 1000


def median_ms(samples: Sequence[float]) -> float:
    return round(statistics.median(samples), 2)


def measure(db: Database, waiting: int) -> dict[str, Any]:
    sku = f"alloc-{uuid.uuid4().hex[:6]}"
    load_queue(db, sku, waiting)
    result: dict[str, Any] = {"waiting": waiting}
    for units in ARRIVALS:
        samples = []
        for repeat in range(REPEATS):
            receipt = ReceiptInput(
                supplier_id="acme",
                receipt=ReceiptRequest(receipt_id=f"r-{units}-{repeat}", sku=sku, quantity=units),
                request_hash="0" * 64,
            )
            samples.append(timed(partial(stock.record_receipt, db, receipt)))
        result[f"arrival_{units}_ms"] = median_ms(samples)
    policy = DEFAULT_POLICY.for_channel(_request("x", sku, datetime.now(UTC)).channel)
    samples = []
    for repeat in range(REPEATS):
        request = _request(f"new-{repeat}", sku, datetime.now(UTC) + timedelta(days=1))
        line = LineInput(
            request=request,
            ship_by=request.ordered_at + timedelta(days=3),
            request_hash="0" * 64,
            policy=policy,
        )
        samples.append(timed(partial(stock.record_line, db, line, RECEIVING)))
    result["queue_one_more_ms"] = median_ms(samples)
    result["refresh_all_etas_ms"] = median_ms(
        [timed(partial(supply.refresh_etas, db, sku, RECEIVING)) for _ in range(3)]
    )
    # Not allocation, but it grows with the same queue: what one metrics scrape costs.
    result["metrics_scrape_ms"] = median_ms([timed(partial(metrics.collect, db)) for _ in range(3)])
    return result


def allocation(
    backends: Sequence[str], sizes: Sequence[int], folder: Path, postgres_admin_url: str
) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for backend in backends:
        found[backend] = []
        for size in sizes:
            say(f"allocation: {backend}, {size:,} waiting lines")
            with fresh_store(backend, folder, postgres_admin_url) as db:
                found[backend].append(measure(db, size))
    return found
