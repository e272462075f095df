"""The rules that must always hold, checked against the store (tests and operators use it).

no oversell:      free stock + units allocated and not released == units that came in,
                  and free stock is never negative
no stranded stock: no line waits for a SKU that has free stock
running figures:  the SKU's running sum of what its waiting lines still need and its count of
                  undated lines, its line counts by state and its open lines by order time
                  (`store.demand`) equal what the lines say
per location:     the same balance at each location, the locations add up to the SKU, and no
                  line shipped more from a location than it was given there
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from store import demand
from store.db import Database
from store.tables import AllocationRow, LineRow, LocationStockRow, ShipmentRow, SkuRow


def broken_rules(db: Database, sku: str) -> list[str]:
    """What is wrong with one SKU's stock; empty when every rule holds."""
    with db.reading() as session:
        row = session.get(SkuRow, sku)
        if row is None:
            return [f"{sku}: not in the catalog"]
        allocated = session.exec(
            select(func.coalesce(func.sum(AllocationRow.quantity), 0)).where(
                AllocationRow.sku == sku
            )
        ).one()
        waiting = session.exec(
            select(func.count())
            .select_from(LineRow)
            .where(LineRow.sku == sku, col(LineRow.waiting).is_(True))
        ).one()
        at_locations = _broken_at_locations(session, row)
        needed = demand.counted(session, sku)
        kept, real = demand.kept_counts(session, sku), demand.line_counts(session, sku)
        open_lines, open_kept = demand.open_keys(session, sku)
    problems = _unbalanced(sku, row.free_stock, int(allocated), row.stock_in_total)
    for figure, units in needed.items():
        if getattr(row, figure) != units:
            problems.append(f"{sku}: running {figure} {getattr(row, figure)} != {units} counted")
    if kept != real:
        problems.append(f"{sku}: line counts kept {kept} != {real} counted")
    if open_lines != open_kept:
        problems.append(f"{sku}: open lines {sorted(open_lines ^ open_kept)} kept wrong")
    if row.free_stock > 0 and waiting:
        problems.append(f"{sku}: {row.free_stock} free while {waiting} lines wait")
    return problems + at_locations


def _unbalanced(place: str, free: int, allocated: int, stock_in: int) -> list[str]:
    """No oversell at `place` (a SKU, or a SKU at a location)."""
    problems = []
    if free < 0:
        problems.append(f"{place}: free stock is {free}")
    if free + allocated != stock_in:
        problems.append(
            f"{place}: free {free} + allocated {allocated} (net of returns) != stock in {stock_in}"
        )
    return problems


def _broken_at_locations(session: Session, row: SkuRow) -> list[str]:
    sku = row.sku
    here = list(session.exec(select(LocationStockRow).where(LocationStockRow.sku == sku)))
    if not here:
        return []  # a SKU untouched since before locations: all of it at `main`
    allocated = dict(
        session.exec(
            select(AllocationRow.location, func.sum(AllocationRow.quantity))
            .where(AllocationRow.sku == sku)
            .group_by(AllocationRow.location)
        ).all()
    )
    given = session.exec(
        select(AllocationRow.line_key, AllocationRow.location, func.sum(AllocationRow.quantity))
        .where(AllocationRow.sku == sku, col(AllocationRow.quantity) > 0)
        .group_by(AllocationRow.line_key, AllocationRow.location)
    ).all()
    shipped = session.exec(
        select(ShipmentRow.line_key, ShipmentRow.origin, func.sum(ShipmentRow.quantity))
        .where(ShipmentRow.sku == sku)
        .group_by(ShipmentRow.line_key, ShipmentRow.origin)
    ).all()
    problems = []
    if sum(loc.free_stock for loc in here) != row.free_stock:
        problems.append(f"{sku}: the locations' free stock does not add up to {row.free_stock}")
    for loc in here:
        units = int(allocated.get(loc.location) or 0)
        problems += _unbalanced(f"{sku}@{loc.location}", loc.free_stock, units, loc.stock_in_total)
    received = {(line, location): int(units) for line, location, units in given}
    for line, origin, units in shipped:
        if int(units) > received.get((line, origin), 0):
            problems.append(f"{sku}@{origin}: {line} shipped {units}, more than it got there")
    return problems
