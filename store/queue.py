"""Reading a SKU's queue and its inbound supply: who waits in what order, and for what date.

The queue order is priority class, then ship-by, then ordered-at, then the line's key (the
README documents it). The ETA of the line at queue position k: walk the SKU's open purchase
orders by expected date, adding what each still has inbound, until the total covers everything
the lines up to and including k still need; that PO's expected date plus the receiving time is
the ETA. No covering PO means no date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, asc, func, text, true, tuple_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from domain.policy import SupplierDates
from store.suppliers import allowances
from store.tables import LineRow, PurchaseOrderRow, as_utc, utcnow

DEFAULT_SUPPLIER_DATES = SupplierDates()

WAITING = text("lines.waiting")
"""The queue's condition, written as the partial index `ix_lines_queue` states it: PostgreSQL
and SQLite use a partial index only when they can see that the query's condition implies the
index's, and neither sees it for `waiting IS true` (nor SQLite for `waiting = 1`): with those,
reading the head of a 100,000-line queue sorted the whole queue (70 ms) instead of reading 200
index entries (0.1 ms)."""

QUEUE_ORDER = ("priority", "ship_by", "ordered_at", "key")
"""The columns of `LineRow` that order a queue (the partial index `ix_lines_queue`)."""


def waiting_lines(
    session: Session,
    sku: str,
    *,
    limit: int | None = None,
    for_update: bool = False,
    dated_only: bool = False,
) -> Sequence[LineRow]:
    """The SKU's queue: waiting lines in allocation order (`dated_only`: those with an ETA)."""
    query = (
        select(LineRow)
        .where(LineRow.sku == sku, WAITING)
        .where(col(LineRow.eta).is_not(None) if dated_only else true())
        .order_by(*(asc(getattr(LineRow, column)) for column in QUEUE_ORDER))
        .limit(limit)
    )
    return session.exec(query.with_for_update() if for_update else query).all()


def queue_demand(
    sku: str, *, dated_only: bool = False
) -> Select[str, int, datetime | None, datetime | None]:
    """The SKU's queue in allocation order as (key, units still needed, ready_at, eta): only the
    columns a re-dating walk reads, not whole rows with their requests."""
    needed = LineRow.quantity - LineRow.allocated_quantity + LineRow.released_quantity
    return (
        select(col(LineRow.key), needed, col(LineRow.ready_at), col(LineRow.eta))
        .where(LineRow.sku == sku, WAITING)
        .where(col(LineRow.eta).is_not(None) if dated_only else true())
        .order_by(*(asc(getattr(LineRow, column)) for column in QUEUE_ORDER))
    )


def still_needed(line: LineRow) -> int:
    return line.quantity - (line.allocated_quantity - line.released_quantity)


def open_purchase_orders(session: Session, sku: str) -> list[PurchaseOrderRow]:
    rows = session.exec(
        select(PurchaseOrderRow)
        .where(PurchaseOrderRow.sku == sku)
        .order_by(asc(col(PurchaseOrderRow.expected_at)), asc(col(PurchaseOrderRow.po_id)))
    ).all()
    return [row for row in rows if row.inbound > 0]


@dataclass
class InboundSupply:
    """Walks the inbound POs in date order, as demand accumulates. A PO's date is its expected
    date plus its supplier's lateness allowance (`store.suppliers`), when it has a record."""

    orders: Sequence[PurchaseOrderRow]
    receiving: timedelta
    allowances: Mapping[str, timedelta] = field(default_factory=dict)
    covered: int = 0
    index: int = 0
    last_date: datetime | None = None

    def __post_init__(self) -> None:
        self.orders = sorted(self.orders, key=lambda order: (self.date_of(order), order.po_id))

    def date_of(self, order: PurchaseOrderRow) -> datetime:
        return as_utc(order.expected_at) + self.allowances.get(order.supplier_id, timedelta(0))

    def date_covering(self, demand: int) -> datetime | None:
        while self.covered < demand and self.index < len(self.orders):
            order = self.orders[self.index]
            self.covered += order.inbound
            self.last_date = self.date_of(order)
            self.index += 1
        if self.covered < demand or self.last_date is None:
            return None
        return self.last_date + self.receiving


def preorder_eta(ready_at: datetime | None, eta: datetime | None) -> datetime | None:
    """A preorder ships from its release plus handling (`ready_at`), never earlier, whatever
    the stock; with nothing inbound, that date while it is still ahead (once it has passed,
    only supply can give a date). Other lines: the queue's date."""
    if ready_at is None:
        return eta
    ready = as_utc(ready_at)
    if eta is None:
        return ready if ready > utcnow() else None
    return max(eta, ready)


@dataclass(frozen=True)
class QueuePlace:
    eta: datetime | None
    lines_behind: bool
    """Some waiting line stands behind this one and its ETA moved back: the lines behind need
    their dates recomputed and their customers told."""


def inbound_supply(
    session: Session,
    orders: Sequence[PurchaseOrderRow],
    receiving: timedelta,
    dates: SupplierDates,
    *,
    percentile: int | None = None,
) -> InboundSupply:
    """The SKU's open POs dated as their suppliers' records say (at `percentile`, by default
    the policy's)."""
    return InboundSupply(orders, receiving, allowances(session, orders, dates, percentile))


def place_in_queue(
    session: Session,
    line: LineRow,
    receiving: timedelta,
    dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
) -> QueuePlace:
    """A waiting line's ETA, and whether the dates of lines behind it moved, without reading
    the whole queue into Python: one sum over the lines ahead and one over those behind (index
    ranges)."""
    orders = open_purchase_orders(session, line.sku)
    if not orders:
        # Nothing inbound: no date for this line, and none before or after for those behind.
        return QueuePlace(eta=None, lines_behind=False)
    other = aliased(LineRow, name="other")
    me = aliased(LineRow, name="me")
    mine = tuple_(*(getattr(me, column) for column in QUEUE_ORDER))
    theirs = tuple_(*(getattr(other, column) for column in QUEUE_ORDER))
    # `other.waiting` as the partial index states it (see WAITING).
    same_queue = and_(col(other.sku) == line.sku, text("other.waiting"), col(me.key) == line.key)
    needed = other.quantity - other.allocated_quantity + other.released_quantity
    ahead = session.exec(
        select(func.coalesce(func.sum(needed), 0)).where(same_queue, theirs < mine)
    ).one()
    behind = session.exec(
        select(func.count(), func.coalesce(func.sum(needed), 0)).where(same_queue, theirs > mine)
    ).one()
    supply = inbound_supply(session, orders, receiving, dates)
    # Demand positions only grow along the queue, and so do their dates: when the first unit
    # behind this line's place and the last unit of the whole queue fall on the same date,
    # every line behind keeps its date (a surge of lines within one PO moves no one).
    first_behind = supply.date_covering(int(ahead) + 1)
    eta = supply.date_covering(int(ahead) + still_needed(line))
    last = supply.date_covering(int(ahead) + still_needed(line) + int(behind[1]))
    return QueuePlace(eta=eta, lines_behind=bool(behind[0]) and first_behind != last)
