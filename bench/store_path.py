"""The store's part of a happy-path line, in process: CPU milliseconds per line, by call.

No Temporal and no HTTP: exactly the store calls the worker makes for one line that waits and
then ships, in the order it makes them:

- `record_line` (the line's record activity, with its workflow run id);
- the confirmation message: `message_reads`, the message under its key and the product's name
  (`records.find_message_for`; before it, `find_message` and `get_sku`), then
  `record_message`;
- after a receipt allocated the line (timed apart, not per line): `shipment_plan`, the
  shipment under its key or else its plan (`records.find_or_plan_shipment`; before it,
  `find_shipment` and `plan_line_shipment`), then `record_shipment`;
- the shipped message, as the confirmation.

docs/store-path.md has the figures before and after the cuts that made these calls cheaper.

(`start_survey` only starts the survey's workflow: it makes no store call.)

Each repeat uses a fresh store; a SKU with a purchase order covering every line, so that each
line is dated from the queue ahead of it. The figure per call is the process's CPU time
(`time.process_time`, the client side of the store: the worker's share) over the lines,
divided by the lines; the median of the repeats is printed.

    python -m bench.store_path --store sqlite --lines 600
    python -m bench.store_path --store postgresql --lines 600 --profile store-path.prof
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bench.allocation import fresh_store
from bench.scenarios import line_body
from domain.line.input import LineInput
from domain.line.messages import MessageKind
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest, PurchaseOrderRequest, ReceiptRequest
from domain.stock import PurchaseOrderInput, ReceiptInput
from store import audit, records, stock, supply
from store.db import Database
from store.tables import MessageRow, ShipmentRow, SkuRow

POSTGRES_ADMIN_URL = os.environ.get(
    "BACKORDERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RECEIVING = timedelta(days=1)
CALLS = ("record_line", "message_reads", "record_message", "shipment_plan", "record_shipment")

T = TypeVar("T")


class Clock:
    """CPU milliseconds spent in each call, summed."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        began = time.process_time()
        result = work(*args, **kwargs)
        self.spent[name] += (time.process_time() - began) * 1000
        return result


def _line_input(order_id: str, sku: str) -> LineInput:
    request = BackorderRequest.model_validate(line_body(order_id, sku))
    policy = DEFAULT_POLICY.for_channel(request.channel)
    return LineInput(
        request=request,
        ship_by=policy.ship_by(request.ordered_at),
        request_hash="0" * 64,
        policy=policy,
    )


def _message(db: Database, clock: Clock, line_key: str, sku: str, kind: MessageKind) -> None:
    key = f"{line_key}:message:{kind.value}"
    found, name = clock("message_reads", records.find_message_for, db, key, sku)
    if found is not None or name != sku.replace("path-", "Product path-"):
        raise AssertionError(f"message {key} found before it was sent, or the product unnamed")
    row = MessageRow(
        idempotency_key=key,
        line_key=line_key,
        kind=kind,
        recipient="someone@example.com",
        subject="Your order",
        body="The text of the message.",
        html="<p>The text of the message.</p>",
    )
    clock("record_message", records.record_message, db, row)


def run(db: Database, lines: int) -> tuple[dict[str, float], float]:
    """The calls' CPU ms per line, and the receipt's CPU ms (once for all lines)."""
    sku = f"path-{uuid.uuid4().hex[:6]}"
    with db.transaction() as session:
        session.add(SkuRow(sku=sku, name=f"Product {sku}"))
    order = PurchaseOrderRequest(
        sku=sku, quantity=2 * lines, expected_at=datetime.now(UTC) + timedelta(days=9)
    )
    supply.apply_purchase_order(
        db, PurchaseOrderInput(supplier_id="acme", po_id="po-1", order=order)
    )
    clock = Clock()
    keys = []
    for index in range(lines):
        line_input = _line_input(f"o{index:06d}", sku)
        run_id = uuid.uuid4().hex
        result = clock("record_line", stock.record_line, db, line_input, RECEIVING, run_id=run_id)
        if result.eta is None or result.allocations:
            raise AssertionError(f"line {index} was not dated and left waiting: {result}")
        key = f"backorder:o{index:06d}:1"
        keys.append(key)
        _message(db, clock, key, sku, MessageKind.BACKORDER_CONFIRMATION)
    receipt = ReceiptInput(
        supplier_id="acme",
        receipt=ReceiptRequest(receipt_id="r-1", sku=sku, quantity=lines, po_id="po-1"),
        request_hash="0" * 64,
    )
    # A full collection of the garbage of the lines before, not charged to the receipt: where
    # one lands otherwise moves its single figure by half.
    gc.collect()
    began = time.process_time()
    arrived = stock.record_receipt(db, receipt)
    receipt_ms = (time.process_time() - began) * 1000
    if len(arrived.allocations) != lines:
        raise AssertionError(f"the receipt allocated {len(arrived.allocations)} lines")
    for key in keys:
        shipment = f"{key}:shipment:1"
        planned = clock(
            "shipment_plan",
            records.find_or_plan_shipment,
            db,
            line_key=key,
            key=shipment,
            quantity=1,
        )
        if not isinstance(planned, tuple):
            raise AssertionError(f"shipment {shipment} found before it was booked")
        origin, quantity = planned
        row = ShipmentRow(
            idempotency_key=shipment,
            line_key=key,
            sequence=1,
            quantity=quantity,
            tracking_number=f"T-{key}",
            carrier_shipment_id=f"S-{key}",
            origin=origin,
        )
        clock("record_shipment", records.record_shipment, db, line_key=key, sku=sku, row=row)
        _message(db, clock, key, sku, MessageKind.SHIPPED)
    problems = audit.broken_rules(db, sku)
    if problems:
        raise AssertionError(f"the store's figures are wrong: {problems}")
    return {name: clock.spent[name] / lines for name in CALLS}, receipt_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of one more run here")
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    receipts: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            with fresh_store(args.store, Path(folder), POSTGRES_ADMIN_URL) as db:
                per_line, receipt_ms = run(db, args.lines)
            runs.append(per_line)
            receipts.append(receipt_ms)
        if args.profile is not None:
            with fresh_store(args.store, Path(folder), POSTGRES_ADMIN_URL) as db:
                profiler = cProfile.Profile()
                profiler.runcall(run, db, args.lines)
                profiler.dump_stats(args.profile)
    print(f"{args.store}, {args.lines} lines, median of {args.repeats}: CPU ms per line")
    for name in CALLS:
        print(f"  {name:<20} {statistics.median(run[name] for run in runs):7.3f}")
    total = statistics.median(sum(run.values()) for run in runs)
    print(f"  {'total':<20} {total:7.3f}")
    print(f"  (the receipt allocating all lines, once: {statistics.median(receipts):.1f} ms)")


if __name__ == "__main__":
    main()
