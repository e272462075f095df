"""Stock by location (docs/locations.md): each SKU's free stock and stock-in at each location,
the units each line holds at each location, and where a shipment leaves from.

The SKU row keeps the totals (`SkuRow.free_stock`, `stock_in_total`), which everything that
reads a SKU's stock as one figure (availability, selling limits, substitutes) reads as before;
every change of stock here changes a location and its SKU's total together, under the SKU's
lock. A SKU whose total the locations do not add up to (a row written before locations, or by
hand) has the difference at `main`, where everything was before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from domain.contract.lines import line_key
from domain.values import MAIN_LOCATION
from store.db import Database, lock_sku
from store.queue import open_purchase_orders
from store.tables import (
    AllocationRow,
    LineRow,
    LocationStockRow,
    ShipmentPlanRow,
    ShipmentRow,
    SkuRow,
    utcnow,
)


def location_order(preferred: Sequence[str], present: Iterable[str]) -> list[str]:
    """The order free stock is taken from, of the locations `present`: the `preferred` ones (a
    channel's policy) as listed, then `main`, then the rest by name."""
    here = set(present)
    first = [name for name in dict.fromkeys(preferred) if name in here]
    rest = sorted(here - set(first), key=lambda name: (name != MAIN_LOCATION, name))
    return [*first, *rest]


def one_origin_first(preferred: Sequence[str], free: Mapping[str, int], quantity: int) -> list[str]:
    """The order a line that does not allow partial shipment takes free stock in: the first
    location, in the `preferred` order (`location_order`), whose free stock covers all
    `quantity` units, then the rest in that order; only when none covers it does the line take
    from several (and ship all its origins at once, `workflows.line.life.ship`)."""
    order = location_order(preferred, free)
    whole = next((name for name in order if free[name] >= quantity), None)
    return order if whole is None else [whole, *(name for name in order if name != whole)]


def stock_at(session: Session, sku: SkuRow) -> dict[str, LocationStockRow]:
    """The SKU's stock rows by location, consistent with its totals. Caller holds the SKU lock."""
    rows = {
        row.location: row
        for row in session.exec(select(LocationStockRow).where(LocationStockRow.sku == sku.sku))
    }
    free = sum(row.free_stock for row in rows.values())
    total = sum(row.stock_in_total for row in rows.values())
    if free != sku.free_stock or total != sku.stock_in_total:
        main = rows.get(MAIN_LOCATION) or _new_row(session, sku.sku, MAIN_LOCATION)
        rows[MAIN_LOCATION] = main
        main.free_stock += sku.free_stock - free
        main.stock_in_total += sku.stock_in_total - total
    return rows


def _new_row(session: Session, sku: str, location: str) -> LocationStockRow:
    row = LocationStockRow(sku=sku, location=location)
    session.add(row)
    return row


def at(
    session: Session, rows: dict[str, LocationStockRow], sku: SkuRow, location: str
) -> LocationStockRow:
    """The SKU's row at `location`, made when the SKU has never had stock there."""
    if location not in rows:
        rows[location] = _new_row(session, sku.sku, location)
    return rows[location]


def change_free(sku: SkuRow, row: LocationStockRow, units: int, *, enters: bool = False) -> None:
    """`units` more (or fewer) free at `row`'s location; `enters`: the units enter (or leave)
    the stock itself (a receipt, a stock count), not only a line's hold."""
    row.free_stock += units
    sku.free_stock += units
    if enters:
        row.stock_in_total += units
        sku.stock_in_total += units
    row.updated_at = utcnow()


def held_at(session: Session, line: LineRow) -> dict[str, int]:
    """Units of its current SKU the line holds at each location: allocated (returns are
    negative), less shipped from there. Locations where it holds nothing are left out."""
    return _held(session, line.key, line.sku)


def _sums(table: Any, place: Any) -> Any:
    return (
        core_select(place, func.sum(table.quantity))
        .where(table.line_key == bindparam("key"), table.sku == bindparam("sku"))
        .group_by(place)
    )


_HELD = (
    (_sums(AllocationRow, AllocationRow.location), 1),
    (_sums(ShipmentRow, ShipmentRow.origin), -1),
)
_FIRSTS = (
    select(col(AllocationRow.location), func.min(AllocationRow.id))
    .where(
        AllocationRow.line_key == bindparam("key"),
        AllocationRow.sku == bindparam("sku"),
        col(AllocationRow.location).in_(bindparam("locations", expanding=True)),
    )
    .group_by(AllocationRow.location)
)
_LINE_SKU = select(col(LineRow.sku)).where(LineRow.key == bindparam("key"))
_PLAN = select(col(ShipmentPlanRow.origin), col(ShipmentPlanRow.quantity)).where(
    ShipmentPlanRow.idempotency_key == bindparam("key")
)
_NEW_PLAN = insert(ShipmentPlanRow)
"""Statements of a shipment's plan, built once: each line's shipment asks them all."""


def _held(session: Session, key: str, sku: str) -> dict[str, int]:
    held: dict[str, int] = defaultdict(int)
    for statement, sign in _HELD:
        for location, units in session.connection().execute(statement, {"key": key, "sku": sku}):
            held[location] += sign * int(units)
    return {location: units for location, units in held.items() if units > 0}


def first_allocated(session: Session, line: LineRow, locations: Iterable[str]) -> list[str]:
    """`locations` in the order the line was first given stock at each (oldest first)."""
    return _first_allocated(session, line.key, line.sku, locations)


def _first_allocated(session: Session, key: str, sku: str, locations: Iterable[str]) -> list[str]:
    places = list(locations)
    found = session.connection().execute(_FIRSTS, {"key": key, "sku": sku, "locations": places})
    firsts: dict[str, int | None] = {location: first for location, first in found}
    return sorted(places, key=lambda location: (firsts.get(location) or 0, location))


def plan_shipment(
    session: Session, key_of_line: str, sku: str, key: str, quantity: int
) -> tuple[str, int]:
    """Where shipment `key` of a line of `sku` leaves from and how many units it carries: up to
    `quantity` of what the line holds at one location (the one it was given stock at first);
    decided once, so that a retry books what the first attempt did. Caller holds the SKU lock.

    A line whose held units the store cannot place (rows from before locations, after a
    substitute) ships `quantity` from `main`, as every line did before."""
    connection = session.connection()
    plan = connection.execute(_PLAN, {"key": key}).first()
    if plan is not None:
        return str(plan.origin), int(plan.quantity)
    held = _held(session, key_of_line, sku)
    if sum(held.values()) < quantity:
        origin, units = MAIN_LOCATION, quantity
    else:
        origin = _first_allocated(session, key_of_line, sku, held)[0]
        units = min(quantity, held[origin])
    connection.execute(
        _NEW_PLAN,
        {
            "idempotency_key": key,
            "line_key": key_of_line,
            "origin": origin,
            "quantity": units,
            "created_at": utcnow(),
        },
    )
    return origin, units


def inbound_at(session: Session, sku: str) -> dict[str, int]:
    """Units still to come on the SKU's purchase orders, by the location they are for."""
    inbound: dict[str, int] = defaultdict(int)
    for order in open_purchase_orders(session, sku):
        inbound[order.location] += order.inbound
    return dict(inbound)


def plan_line_shipment(db: Database, key_of_line: str, key: str, quantity: int) -> tuple[str, int]:
    """The origin and units of shipment `key` of a line (`plan_shipment`), in its own
    transaction under the lock of the line's SKU."""
    with db.transaction() as session:
        return plan_line_shipment_in(session, key_of_line, key, quantity)


def plan_line_shipment_in(
    session: Session, key_of_line: str, key: str, quantity: int
) -> tuple[str, int]:
    """`plan_line_shipment` in the caller's transaction."""
    sku = session.connection().execute(_LINE_SKU, {"key": key_of_line}).scalar()
    if sku is None:
        return MAIN_LOCATION, quantity  # the store does not know it: as before locations
    lock_sku(session, sku)
    # The line's SKU again, under the lock (a substitute may have just moved it).
    sku = session.connection().execute(_LINE_SKU, {"key": key_of_line}).scalar_one()
    return plan_shipment(session, key_of_line, sku, key, quantity)


def order_origins(
    db: Database, order_id: str, line_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """What the lines of a ship-complete order hold, by origin then SKU, origins in the order
    `main` first, then by name."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with db.reading() as session:
        keys = [line_key(order_id, line_id) for line_id in line_ids]
        for line in session.exec(select(LineRow).where(col(LineRow.key).in_(keys))):
            for location, units in held_at(session, line).items():
                found[location][line.sku] += units
    return {location: dict(found[location]) for location in location_order((), found)}


def stock_by_location(db: Database, sku: str) -> tuple[SkuRow, dict[str, tuple[int, int]]] | None:
    """The SKU's row, and its free stock and inbound units at each location it has or expects
    stock at, read together (so that the locations add up to the row's total)."""
    with db.reading() as session:
        row = session.get(SkuRow, sku)
        if row is None:
            return None
        free = {
            here.location: here.free_stock
            for here in session.exec(select(LocationStockRow).where(LocationStockRow.sku == sku))
        }
        inbound = inbound_at(session, sku)
    # A total the locations do not add up to has the difference at `main` (`stock_at`).
    missing = row.free_stock - sum(free.values())
    if missing or not free:
        free[MAIN_LOCATION] = free.get(MAIN_LOCATION, 0) + missing
    return row, {
        location: (free.get(location, 0), inbound.get(location, 0))
        for location in location_order((), {*free, *inbound})
    }
