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
from typing import Any

from sqlalchemy import asc, bindparam, desc, func, literal, true, tuple_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from domain.policy import SupplierDates
from store.demand import WAITING, needed, waiting_units
from store.suppliers import allowances
from store.tables import LineRow, PurchaseOrderRow, as_utc, utcnow

DEFAULT_SUPPLIER_DATES = SupplierDates()

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
    return (
        select(col(LineRow.key), needed(), col(LineRow.ready_at), col(LineRow.eta))
        .where(LineRow.sku == sku, WAITING)
        .where(col(LineRow.eta).is_not(None) if dated_only else true())
        .order_by(*(asc(getattr(LineRow, column)) for column in QUEUE_ORDER))
    )


_PURCHASE_ORDERS = (
    select(PurchaseOrderRow)
    .where(PurchaseOrderRow.sku == bindparam("sku"))
    .order_by(asc(col(PurchaseOrderRow.expected_at)), asc(col(PurchaseOrderRow.po_id)))
)


def open_purchase_orders(session: Session, sku: str) -> list[PurchaseOrderRow]:
    rows = session.exec(_PURCHASE_ORDERS, params={"sku": sku}).all()
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


NEAR = 200
"""Lines a bounded probe sums on one side of a new line's place: the side that has fewer is
summed, the other is the SKU's running sum of waiting demand minus it and the line."""


def place_in_queue(
    session: Session,
    line: LineRow,
    receiving: timedelta,
    dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
    total: int | None = None,
) -> QueuePlace:
    """A waiting line's ETA, and whether the dates of lines behind it moved, without reading
    the whole queue: the SKU's running sum of waiting demand (`store.demand`) less what the
    lines on the shorter side of its place need (a line queued at the back, the common case,
    reads one index entry: none behind). `total`: that sum, the line's share included, when
    the caller knows it (a line not flushed yet is not in the stored sum)."""
    orders = open_purchase_orders(session, line.sku)
    if not orders:
        # Nothing inbound: no date for this line, and none before or after for those behind.
        return QueuePlace(eta=None, lines_behind=False)
    if total is None:
        total = waiting_units(session, line.sku)
    mine = int(needed(line))
    behind_lines, behind = _side(session, line, ahead=False)
    if behind_lines < NEAR:
        ahead = total - mine - behind
    else:
        ahead_lines, ahead = _side(session, line, ahead=True)
        if ahead_lines >= NEAR:
            # Deep inside a long queue on both sides: the sum ahead, an index range scan.
            ahead = _side(session, line, ahead=True, limit=None)[1]
    supply = inbound_supply(session, orders, receiving, dates)
    # Demand positions only grow along the queue, and so do their dates: when the first unit
    # behind this line's place and the last unit of the whole queue fall on the same date,
    # every line behind keeps its date (a surge of lines within one PO moves no one).
    first_behind = supply.date_covering(ahead + 1)
    eta = supply.date_covering(ahead + mine)
    last = supply.date_covering(total)
    return QueuePlace(eta=eta, lines_behind=bool(behind_lines) and first_behind != last)


def _side(
    session: Session, line: LineRow, *, ahead: bool, limit: int | None = NEAR
) -> tuple[int, int]:
    """(lines, units they still need) of the `limit` lines nearest to `line` on one side of its
    place (all of that side's lines without a limit): an index range of `ix_lines_queue`,
    bounded by the line's own place as values (PostgreSQL plans a join to the line's row as a
    scan of the whole queue)."""
    values = {f"at_{column}": getattr(line, column) for column in QUEUE_ORDER}
    values["sku"] = line.sku
    lines, units = session.connection().execute(_side_sum(ahead, limit), values).one()
    return int(lines), int(units)


_SIDES: dict[tuple[bool, int | None], Any] = {}


def _side_sum(ahead: bool, limit: int | None) -> Any:
    """The statement of `_side`, built once per side and limit; the line's place as bound
    values, typed as the queue's columns (so that SQLite compares timestamps as it stores
    them)."""
    statement = _SIDES.get((ahead, limit))
    if statement is None:
        order = [getattr(LineRow, column) for column in QUEUE_ORDER]
        columns = LineRow.__table__.c  # type: ignore[attr-defined]
        mine = tuple_(*(bindparam(f"at_{name}", type_=columns[name].type) for name in QUEUE_ORDER))
        nearest = (
            select(needed().label("n"))
            .where(LineRow.sku == bindparam("sku"), WAITING)
            .where(position() < mine if ahead else position() > mine)
            .order_by(*(desc(column) if ahead else asc(column) for column in order))
            .limit(limit)
            .subquery()
        )
        statement = select(func.count(), func.coalesce(func.sum(nearest.c.n), 0))
        _SIDES[(ahead, limit)] = statement
    return statement


Position = tuple[Any, ...]
"""A line's place in the queue: its values of `QUEUE_ORDER`."""


def position() -> Any:
    """A line's place in the queue, as a row value to compare."""
    return tuple_(*(getattr(LineRow, column) for column in QUEUE_ORDER))


def at(place: Position) -> Any:
    """A place in the queue as bound values, typed as the queue's columns (so that SQLite
    compares timestamps as it stores them)."""
    columns = LineRow.__table__.c  # type: ignore[attr-defined]
    typed = zip(QUEUE_ORDER, place, strict=True)
    return tuple_(*(literal(value, columns[name].type) for name, value in typed))
