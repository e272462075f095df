"""Allocation across several locations under concurrency, by property: hypothesis writes
scenarios of arrivals at several locations (some reported twice), new lines (each channel with
its own location order), cancels, shipments and stock counts per location; each batch runs
every operation at the same moment from its own thread and connection, through the store
functions the activities call (no Temporal here), on SQLite and PostgreSQL.

After every batch:

1. The store's audit (`store.audit.broken_rules`): per SKU and per location, free stock never
   negative and free + net allocations == stock in (no oversell); the locations add up to the
   SKU; no free stock anywhere while a line waits (no stranded stock); no line shipped more
   from a location than it was given there.
2. Priority across locations: a line that was already waiting when the batch began and still
   waits after it saw no line behind it in the SKU's queue (priority, ship-by, ordered-at, key)
   get stock during the batch, whatever location the stock was at.
3. An arrival's units are allocated at the location it arrived at; a new line takes free stock
   in its channel's location order; each shipment leaves from one location the line held units
   at, and the shipment record names it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from domain.contract.lines import line_key
from domain.line.effects import ReleaseInput
from domain.line.input import LineInput
from domain.policy import DEFAULT_POLICY, ChannelPolicy
from domain.requests import BackorderRequest, Customer, ReceiptRequest, SkuRequest
from domain.stock import AllocationNotice, ReceiptInput, SkuInput
from domain.values import Channel, canonical_hash
from store import locations, records, stock
from store.audit import broken_rules
from store.db import Database
from store.tables import AllocationRow, LineRow, ReceiptRow, ShipmentRow
from tests.support.concurrent import Stores, concurrent_stores, run_at_once

THREADS = 4
LOCATIONS = ("main", "east", "west")
PREFERENCES = ((), ("west",), ("east", "west"))
"""The location orders of the channels new lines come from (none: main first, then by name)."""
BASE = datetime(2026, 1, 5, 9, tzinfo=UTC)


@dataclass(frozen=True)
class NewLine:
    quantity: int
    ship_by_day: int
    rank: int
    prefer: int


@dataclass(frozen=True)
class Arrival:
    location: int
    quantity: int
    reported: int


@dataclass(frozen=True)
class OnLine:
    """A cancel or a shipment of a line of an earlier batch."""

    action: str
    line: int


@dataclass(frozen=True)
class Count:
    location: int
    level: int


Operation = NewLine | Arrival | OnLine | Count
_location = st.integers(0, len(LOCATIONS) - 1)
_operation: st.SearchStrategy[Operation] = st.one_of(
    st.builds(
        NewLine,
        quantity=st.integers(1, 5),
        ship_by_day=st.integers(0, 2),
        rank=st.integers(0, 9),
        prefer=st.integers(0, len(PREFERENCES) - 1),
    ),
    st.builds(
        NewLine,
        quantity=st.integers(1, 5),
        ship_by_day=st.just(1),
        rank=st.just(5),
        prefer=st.just(0),
    ),
    st.builds(
        Arrival, location=_location, quantity=st.integers(1, 6), reported=st.sampled_from([1, 1, 2])
    ),
    st.builds(Arrival, location=_location, quantity=st.integers(1, 4), reported=st.just(1)),
    st.builds(OnLine, action=st.sampled_from(["cancel", "ship"]), line=st.integers(0, 30)),
    st.builds(Count, location=_location, level=st.integers(0, 3)),
)
scenarios = st.lists(
    st.lists(_operation, min_size=2, max_size=THREADS).map(tuple), min_size=3, max_size=8
)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    with concurrent_stores(request.param, THREADS) as opened:
        yield opened


class Scenario:
    """Turns drawn operations into store calls on one SKU, and checks what they did."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sku = f"l{uuid.uuid4().hex[:8]}"
        self.lines: list[str] = []
        self.receipts = 0
        self.created = 0
        self.shipments: dict[str, int] = {}

    def sku_input(self, levels: dict[str, int]) -> SkuInput:
        request = SkuRequest(name="Product", stock=levels)
        return SkuInput(sku=self.sku, request=request, request_hash=canonical_hash(request))

    def line_input(self, operation: NewLine, number: int) -> LineInput:
        request = BackorderRequest(
            order_id=f"{self.sku}o{operation.rank}x{number:03d}",
            line_id="1",
            sku=self.sku,
            quantity=operation.quantity,
            unit_price="10.00",
            currency="USD",
            channel=Channel.WEB,
            customer=Customer(id="c1", email="c1@example.com"),
            ordered_at=BASE,
        )
        channel = ChannelPolicy(handling_days=3, locations=list(PREFERENCES[operation.prefer]))
        policy = DEFAULT_POLICY.for_channel(Channel.WEB).model_copy(update={"channel": channel})
        return LineInput(
            request=request,
            ship_by=BASE + timedelta(days=operation.ship_by_day),
            request_hash=canonical_hash(request),
            policy=policy,
        )

    def calls(self, batch: tuple[Operation, ...]) -> list[tuple[Any, ...]]:
        """At most one call per line; line operations on lines of earlier batches only."""
        calls: list[tuple[Any, ...]] = []
        touched: set[str] = set()
        for operation in batch:
            match operation:
                case NewLine():
                    self.created += 1
                    line_input = self.line_input(operation, self.created)
                    calls.append(("line", line_input))
                case Arrival(location=where, quantity=quantity, reported=reported):
                    self.receipts += 1
                    receipt = ReceiptRequest(
                        receipt_id=f"r{self.receipts}",
                        sku=self.sku,
                        quantity=quantity,
                        location=LOCATIONS[where],
                    )
                    for _ in range(reported):
                        calls.append(
                            (
                                "receipt",
                                ReceiptInput(
                                    supplier_id="acme",
                                    receipt=receipt,
                                    request_hash=canonical_hash(receipt),
                                ),
                            )
                        )
                case Count(location=where, level=level):
                    calls.append(("count", self.sku_input({LOCATIONS[where]: level})))
                case OnLine(action=action, line=index):
                    if not self.lines:
                        continue
                    key = self.lines[index % len(self.lines)]
                    if key in touched:
                        continue
                    touched.add(key)
                    calls.append((action, key))
        return calls[:THREADS]

    def run(self, db: Database, call: tuple[Any, ...]) -> Any:
        kind, subject = call
        if kind == "line":
            return stock.record_line(db, subject)
        if kind == "receipt":
            return stock.record_receipt(db, subject)
        if kind == "count":
            return stock.apply_sku(db, subject)
        if kind == "cancel":
            reason = ReleaseInput(line_key=subject, sku=self.sku, reason="test")
            return stock.release_line(db, reason)
        return self.ship(db, subject)

    def ship(self, db: Database, key: str) -> str | None:
        """Ship what the line holds, as the shipment activity does: the origin it plans."""
        with db.reading() as session:
            line = session.get(LineRow, key)
            assert line is not None
            held = line.held_quantity if line.state != "cancelled" else 0
        if held <= 0:
            return None
        sequence = self.shipments.get(key, 0) + 1
        self.shipments[key] = sequence
        idempotency = f"{key}:shipment:{sequence}"
        origin, quantity = locations.plan_line_shipment(db, key, idempotency, held)
        row = ShipmentRow(
            idempotency_key=idempotency,
            line_key=key,
            sequence=sequence,
            quantity=quantity,
            tracking_number=f"T{sequence}",
            carrier_shipment_id=f"S{sequence}",
            origin=origin,
        )
        records.record_shipment(db, line_key=key, sku=self.sku, row=row)
        return origin

    def waiting_keys(self) -> dict[str, tuple[Any, ...]]:
        """Waiting lines, by key, with their place in the queue."""
        with self.db.reading() as session:
            rows = session.exec(
                select(LineRow).where(LineRow.sku == self.sku, col(LineRow.waiting).is_(True))
            ).all()
            return {row.key: _place(row) for row in rows}

    def last_allocation(self) -> int:
        with self.db.reading() as session:
            ids = session.exec(select(AllocationRow.id).where(AllocationRow.sku == self.sku)).all()
            return max((i for i in ids if i is not None), default=0)

    def problems(self, waited: dict[str, tuple[Any, ...]], since: int) -> list[str]:
        found = broken_rules(self.db, self.sku)
        with self.db.reading() as session:
            lines = {
                row.key: row for row in session.exec(select(LineRow).where(LineRow.sku == self.sku))
            }
            given = session.exec(
                select(AllocationRow).where(
                    AllocationRow.sku == self.sku,
                    col(AllocationRow.id) > since,
                    col(AllocationRow.quantity) > 0,
                )
            ).all()
            arrived = {
                f"receipt:acme:{row.receipt_id}": row.location
                for row in session.exec(select(ReceiptRow).where(ReceiptRow.sku == self.sku))
            }
        for key, place in waited.items():
            if not lines[key].waiting:
                continue
            for allocation in given:
                if _place(lines[allocation.line_key]) > place:
                    found.append(
                        f"{allocation.line_key} got stock while {key}, ahead of it, waited"
                    )
        for allocation in given:
            where = arrived.get(allocation.source)
            if where is not None and allocation.location != where:
                found.append(f"{allocation.source} at {where} allocated at {allocation.location}")
        for line in lines.values():
            if line.held_quantity > line.quantity or line.held_quantity < 0:
                found.append(f"{line.key} holds {line.held_quantity} of {line.quantity}")
        return found


def _place(line: LineRow) -> tuple[Any, ...]:
    return (
        line.priority,
        line.ship_by.replace(tzinfo=None),
        line.ordered_at.replace(tzinfo=None),
        line.key,
    )


def _picked_in_order(line_input: LineInput, notices: list[AllocationNotice]) -> bool:
    """A new line's own allocations follow its channel's location order."""
    order = locations.location_order(line_input.policy.channel.locations, LOCATIONS)
    own = [order.index(notice.location) for notice in notices if notice.source.startswith("sku:")]
    return own == sorted(own)


@settings(
    max_examples=int(os.environ.get("LOCATION_EXAMPLES", "8")),
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(initial=st.tuples(*(st.integers(0, 3) for _ in LOCATIONS)), batches=scenarios)
def test_arrivals_at_several_locations_racing_cancels_and_new_lines_keep_every_rule(
    stores: Stores, initial: tuple[int, ...], batches: list[tuple[Operation, ...]]
) -> None:
    note(repr((initial, batches)))
    scenario = Scenario(stores.dbs[0])
    stock.apply_sku(scenario.db, scenario.sku_input(dict(zip(LOCATIONS, initial, strict=True))))
    for number, batch in enumerate(batches, start=1):
        calls = scenario.calls(batch)
        if not calls:
            continue
        waited, since = scenario.waiting_keys(), scenario.last_allocation()
        outcomes = run_at_once(stores, calls, scenario.run)
        for call, outcome in zip(calls, outcomes, strict=True):
            if call[0] == "line":
                request = call[1].request
                scenario.lines.append(line_key(request.order_id, request.line_id))
                own = [n for n in outcome.allocations if n.line_key == scenario.lines[-1]]
                assert _picked_in_order(call[1], own), f"batch {number}: {own}"
            if call[0] == "ship" and outcome is not None:
                assert outcome in LOCATIONS
        problems = scenario.problems(waited, since)
        assert problems == [], f"batch {number} on {stores.backend}: {problems}"
