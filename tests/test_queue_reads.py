"""Queue reads on a hot SKU (docs/queue-reads.md).

The partial indexes a metrics scrape reads name the line states by hand: they must stay the
final and open states of `LineState`. Re-dating by ranges (`store.redate`) must tell exactly the
lines a line-by-line walk tells, on random queues, purchase orders and preorders, on both
stores; the running figures of `store.demand` are checked by the store audit, which the
allocation and location property tests run after every batch of random operations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.line.state import LineState
from domain.stock import EtaChange
from store import demand, metrics, redate
from store.audit import broken_rules
from store.db import Database
from store.queue import (
    DEFAULT_SUPPLIER_DATES,
    inbound_supply,
    open_purchase_orders,
    place_in_queue,
)
from store.supply import refresh_etas
from store.tables import LineRow, PurchaseOrderRow, SkuRow
from tests.support.concurrent import concurrent_stores


def quoted(states: set[str]) -> str:
    return ", ".join(f"'{state}'" for state in sorted(states, reverse=True))


def test_open_and_closed_conditions_name_the_final_states() -> None:
    final = {state.value for state in LineState if state.is_final}
    assert str(metrics.OPEN) == f"lines.state NOT IN ({quoted(final)})"
    assert str(metrics.CLOSED) == f"lines.state IN ({quoted(final)})"


# ---- re-dating by ranges, against the line-by-line walk ---------------------------------------

BASE = datetime(2031, 1, 6, tzinfo=UTC)
RECEIVING = timedelta(days=1)
DAYS = [BASE + timedelta(days=day) for day in range(6)]
STORED = [None, *(day + RECEIVING for day in DAYS), BASE + timedelta(hours=7)]
"""ETAs a line may show before re-dating: none, a PO's date, another date."""
READY = [None, None, None, BASE + timedelta(days=2, hours=3), datetime(2020, 1, 1, tzinfo=UTC)]
"""Most lines are not preorders; a preorder ships from a date ahead or one already passed."""


@dataclass(frozen=True)
class QueuedLine:
    quantity: int
    allocated: int
    priority: int
    ship_by: int
    ready_at: datetime | None
    eta: datetime | None


queued_lines = st.builds(
    QueuedLine,
    quantity=st.integers(1, 4),
    allocated=st.integers(0, 3),
    priority=st.integers(0, 1),
    ship_by=st.integers(0, 3),
    ready_at=st.sampled_from(READY),
    eta=st.sampled_from(STORED),
)
orders = st.lists(st.tuples(st.integers(1, 8), st.integers(0, 5)), max_size=5)
"""Purchase orders as (units inbound, day expected): several may share a day."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Database]:
    with concurrent_stores(request.param, 1) as opened:
        yield opened.dbs[0]


def line_row(sku: str, number: str, **values: Any) -> LineRow:
    """A waiting line of `sku` with the given quantities, place and dates."""
    return LineRow(
        key=f"backorder:{sku}{number}:1",
        order_id=f"{sku}{number}",
        line_id="1",
        sku=sku,
        state=LineState.WAITING,
        channel="web",
        ship_policy="partial",
        unit_price="1.00",
        currency="USD",
        customer_id="c1",
        customer_tier="standard",
        request_json="{}",
        request_hash="0" * 64,
        **values,
    )


def queue_of(db: Database, lines: list[QueuedLine], pos: list[tuple[int, int]]) -> str:
    """A SKU with `lines` waiting (each still needing at least a unit) and `pos` inbound."""
    sku = f"r{uuid.uuid4().hex[:10]}"
    with db.transaction() as session:
        session.add(SkuRow(sku=sku, name="Queue"))
        for number, (units, day) in enumerate(pos):
            session.add(
                PurchaseOrderRow(
                    supplier_id="acme",
                    po_id=f"{sku}-{number}",
                    sku=sku,
                    quantity=units,
                    expected_at=DAYS[day],
                )
            )
        for number, line in enumerate(lines):
            session.add(
                line_row(
                    sku,
                    f"{number:03d}",
                    quantity=line.quantity,
                    allocated_quantity=min(line.allocated, line.quantity - 1),
                    priority=line.priority,
                    ship_by=BASE + timedelta(days=line.ship_by),
                    ordered_at=BASE - timedelta(days=1),
                    ready_at=line.ready_at,
                    eta=line.eta,
                )
            )
    return sku


def told(changes: list[EtaChange]) -> dict[str, datetime | None]:
    return {change.line_key: change.eta for change in changes}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(queued_lines, max_size=14), pos=orders)
def test_re_dating_by_ranges_tells_exactly_the_lines_a_walk_tells(
    store: Database, lines: list[QueuedLine], pos: list[tuple[int, int]]
) -> None:
    sku = queue_of(store, lines, pos)
    with store.reading() as session:
        supply = inbound_supply(
            session, open_purchase_orders(session, sku), RECEIVING, DEFAULT_SUPPLIER_DATES
        )
        walked = redate.walk(session, sku, supply)
    changes = refresh_etas(store, sku, RECEIVING)
    assert told(changes) == told(walked.changes)
    assert len(changes) == len(told(changes))  # each line told once
    # What was stored is what a walk computes: a second re-dating tells no one, and the running
    # figures (the count of undated lines changes without a flush) still add up.
    assert refresh_etas(store, sku, RECEIVING) == []
    assert broken_rules(store, sku) == []


def test_boundaries_are_found_from_either_end_of_the_queue(store: Database) -> None:
    """Cumulative demand 1, 3, 6, 10 (lines of 1 to 4 units): the last line whose demand is at
    most each bound, read from the front for low bounds and from the back for high ones."""
    sku = queue_of(
        store, [QueuedLine(units, 0, 0, units, None, None) for units in (1, 2, 3, 4)], []
    )
    keys = [f"backorder:{sku}{number:03d}:1" for number in range(4)]
    with store.reading() as session:
        front = redate.boundaries(session, sku, [0, 1, 2, 3], 10)
        back = redate.boundaries(session, sku, [5, 6, 9], 10)
    assert [place and place[-1] for place in front] == [None, keys[0], keys[0], keys[1]]
    assert [place and place[-1] for place in back] == [keys[1], keys[2], keys[2]]


# ---- the running figures ---------------------------------------------------------------------


def test_queueing_at_the_back_reads_no_line_ahead(store: Database) -> None:
    """The lines ahead of a line at the back are the running sum less the line: a wrong running
    sum shows in the date (3 units ahead of a 2-unit line; POs of 4 and 2 units)."""
    sku = queue_of(store, [QueuedLine(3, 0, 0, 0, None, None)], [(4, 1), (2, 3)])
    with store.transaction() as session:
        line = line_row(sku, "999", quantity=2, ship_by=BASE + timedelta(days=3), ordered_at=BASE)
        session.add(line)
        session.flush()
        assert demand.waiting_units(session, sku) == 5
        place = place_in_queue(session, line, RECEIVING)
    assert place.eta == DAYS[3] + RECEIVING and not place.lines_behind
    assert broken_rules(store, sku) == []
