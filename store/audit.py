"""The rules that must always hold, checked against the store (tests and operators use it).

no oversell:      free stock + units allocated and not released == units that came in,
                  and free stock is never negative
no stranded stock: no line waits for a SKU that has free stock
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from store.db import Database
from store.tables import AllocationRow, LineRow, SkuRow


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
    problems = []
    if row.free_stock < 0:
        problems.append(f"{sku}: free stock is {row.free_stock}")
    if row.free_stock + allocated != row.stock_in_total:
        problems.append(
            f"{sku}: free {row.free_stock} + allocated {allocated} (net of returns) "
            f"!= stock in {row.stock_in_total}"
        )
    if row.free_stock > 0 and waiting:
        problems.append(f"{sku}: {row.free_stock} free while {waiting} lines wait")
    return problems
