"""What may still be sold: a SKU's backorder limit against its free stock, inbound supply and
the demand already waiting (docs/selling.md).

    sellable = free stock + inbound + backorder limit - units waiting lines still need
               - units of lines accepted but not yet recorded

A SKU without a limit has no sellable quantity (None: sell on). A line whose quantity is more
than the sellable quantity when it arrives is over the limit: it is accepted all the same (the
order was already taken on a storefront or marketplace whose feed was late), answered
`over_limit`, and told at once that no date can be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from domain.line.input import Preorder
from store.db import Database, lock_sku
from store.demand import waiting_units
from store.queue import open_purchase_orders
from store.stock import UnknownSkuError
from store.tables import LineRow, PendingLineRow, SkuRow, as_utc, table_of, utcnow

PENDING_WINDOW = timedelta(minutes=10)
"""How long a line accepted at the door counts as demand before its workflow records it. A line
is recorded within seconds; a start whose workflow never began (Temporal refused it) stops
counting after this."""


def pending_units(session: Session, sku: str, now: datetime) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(PendingLineRow.quantity), 0)).where(
            PendingLineRow.sku == sku, col(PendingLineRow.created_at) > now - PENDING_WINDOW
        )
    ).one()
    return int(total)


def sellable_quantity(session: Session, row: SkuRow, now: datetime) -> int | None:
    """What a storefront may still sell of the SKU now; None without a backorder limit."""
    if row.backorder_limit is None:
        return None
    inbound = sum(order.inbound for order in open_purchase_orders(session, row.sku))
    demand = waiting_units(session, row.sku) + pending_units(session, row.sku, now)
    return max(0, row.free_stock + inbound + row.backorder_limit - demand)


@dataclass(frozen=True)
class Admitted:
    """What the catalog says of a new line when it arrives."""

    over_limit: bool
    preorder: Preorder | None
    """Set when the line arrives before its product's release date."""


@dataclass(frozen=True)
class Door:
    """What the store says of a line's start at the door, read in one go (`read_door`)."""

    earlier_hash: str | None
    """The request hash of the line already recorded under this key; None for a new line."""
    over_limit: bool
    """The recorded line's judgement, or the new line's (then only with every SKU known)."""
    known: frozenset[str]
    """Which of the named SKUs the catalog has (read for a new line only)."""
    admitted: Admitted | None
    """The new line, judged: None for a recorded line, one naming an unknown SKU, and one still
    to judge."""
    to_judge: bool = False
    """A new line under a backorder limit: its judgement is a write (`judge_start`)."""


_LINES = table_of(LineRow)
_SKUS = table_of(SkuRow)
_PENDING = table_of(PendingLineRow)
# Read at every start, built once and read without the ORM: a start is the API's hottest path.
_RECORDED = core_select(_LINES.c.request_hash, _LINES.c.over_limit).where(
    _LINES.c.key == bindparam("key")
)
_NAMED_SKUS = core_select(
    _SKUS.c.sku, _SKUS.c.backorder_limit, _SKUS.c.release_at, _SKUS.c.ship_before_release
).where(_SKUS.c.sku.in_(bindparam("skus", expanding=True)))
_PENDING_JUDGEMENT = core_select(_PENDING.c.over_limit).where(_PENDING.c.key == bindparam("key"))


def read_door(db: Database, key: str, sku: str, named: list[str]) -> Door:
    """Everything a start needs from the store, read in one go without writing: the hash of a
    line already recorded under `key`, and its judgement; else which of the `named` SKUs the
    catalog has and, when they all exist and the line's SKU has no backorder limit, the new
    line admitted. A line whose SKU has a limit comes back `to_judge` (`judge_start`)."""
    now = utcnow()
    with db.read_connection() as connection:
        recorded = connection.execute(_RECORDED, {"key": key}).first()
        if recorded is not None:
            return Door(recorded.request_hash, recorded.over_limit, frozenset(), None)
        # The line's own SKU is judged from the same read.
        rows = {row.sku: row for row in connection.execute(_NAMED_SKUS, {"skus": named})}
        known = frozenset(rows)
        row = rows.get(sku)
        if row is None or not known.issuperset(named):
            return Door(None, False, known, None)
        if row.backorder_limit is not None:
            return Door(None, False, known, None, to_judge=True)
        # Nothing to judge, nothing to write: a start takes no lock (as before limits).
        pending = connection.execute(_PENDING_JUDGEMENT, {"key": key}).first()
        preorder = _preorder(row.release_at, row.ship_before_release, now)
        admitted = Admitted(pending is not None and pending.over_limit, preorder)
        return Door(None, admitted.over_limit, known, admitted)


def judge_start(db: Database, key: str, sku: str, quantity: int, known: frozenset[str]) -> Door:
    """A new line judged against its SKU's backorder limit, once, and against its release
    date. The judgement is written under the SKU's lock, which orders it against every other
    start, arrival and cancel of the SKU."""
    now = utcnow()
    with db.transaction() as session:
        locked = lock_sku(session, sku)
        if locked is None:
            raise UnknownSkuError(sku)
        admitted = Admitted(
            _judge(session, locked, key, quantity, now),
            _preorder(locked.release_at, locked.ship_before_release, now),
        )
    return Door(None, admitted.over_limit, known, admitted)


def _preorder(
    release_at: datetime | None, ship_before_release: bool, now: datetime
) -> Preorder | None:
    release = as_utc(release_at) if release_at else None
    if release is None or release <= now:
        return None
    return Preorder(release_at=release, ship_before_release=ship_before_release)


def _judge(session: Session, row: SkuRow, key: str, quantity: int, now: datetime) -> bool:
    recorded = session.get(LineRow, key)
    if recorded is not None:
        return recorded.over_limit
    pending = session.get(PendingLineRow, key)
    if pending is not None:
        return pending.over_limit
    if row.backorder_limit is None:
        return False
    session.exec(
        delete(PendingLineRow).where(
            col(PendingLineRow.sku) == row.sku,
            col(PendingLineRow.created_at) <= now - PENDING_WINDOW,
        )
    )
    sellable = sellable_quantity(session, row, now)
    over = sellable is not None and quantity > sellable
    session.add(PendingLineRow(key=key, sku=row.sku, quantity=quantity, over_limit=over))
    return over
