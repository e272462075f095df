"""Honest supplier dates: how late (or early) each supplier was against its purchase orders'
`expected_at`, and what that does to the dates built on its POs (docs/selling.md).

Every receipt that names a PO records its lateness: when it arrived minus the PO's expected
date then (negative: early). From a supplier's last `history_receipts` such receipts:

- the **allowance** added to the expected date of each of its open POs when an ETA or a label
  is built on it: the `percentile`-th lateness by nearest rank, never below zero (an early
  supplier does not make the service promise earlier than the PO says), and none until the
  supplier has `min_receipts` receipts on POs;
- its **performance**: the on-time rate (lateness at most `on_time_grace_days`), lateness p50
  and p90, and the fill rate of its POs that are due (units received, at most the quantity
  ordered, over units ordered).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, desc, select

from domain.policy import SupplierDates
from domain.responses import SupplierPerformance
from store.db import Database
from store.tables import PurchaseOrderRow, ReceiptRow


def nearest_rank(values: Sequence[float], percentile: float) -> float | None:
    """The `percentile`-th value by the nearest-rank method: a value that really occurred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


_LATENESS = (
    select(ReceiptRow.lateness_seconds)
    .where(
        ReceiptRow.supplier_id == bindparam("supplier"),
        col(ReceiptRow.lateness_seconds).is_not(None),
    )
    .order_by(desc(col(ReceiptRow.created_at)), desc(col(ReceiptRow.receipt_id)))
    .limit(bindparam("receipts"))
)
"""Built once: every line queued behind a PO asks it, once per supplier."""


def recent_lateness(session: Session, supplier_id: str, dates: SupplierDates) -> list[float]:
    """Seconds late of the supplier's last receipts on purchase orders, newest first."""
    rows = session.exec(
        _LATENESS, params={"supplier": supplier_id, "receipts": dates.history_receipts}
    ).all()
    return [float(value) for value in rows if value is not None]


def allowance(
    lateness: Sequence[float], dates: SupplierDates, percentile: int | None = None
) -> timedelta | None:
    """What to add to a PO's expected date for this history (at `percentile`, by default the
    policy's); None without enough of it."""
    if len(lateness) < dates.min_receipts:
        return None
    late = nearest_rank(lateness, percentile or dates.percentile) or 0.0
    return timedelta(seconds=max(0.0, late))


def allowances(
    session: Session,
    orders: Iterable[PurchaseOrderRow],
    dates: SupplierDates,
    percentile: int | None = None,
) -> dict[str, timedelta]:
    """The allowance of each supplier of these POs that has enough history."""
    found = {}
    for supplier in sorted({order.supplier_id for order in orders}):
        extra = allowance(recent_lateness(session, supplier, dates), dates, percentile)
        if extra is not None:
            found[supplier] = extra
    return found


def performance(
    db: Database, supplier_id: str, dates: SupplierDates, *, grace: timedelta, now: datetime
) -> SupplierPerformance:
    """A supplier's figures over its last receipts on POs, and the fill rate of its due POs;
    `grace`: how late a receipt may be and count as on time."""
    with db.reading() as session:
        lateness = recent_lateness(session, supplier_id, dates)
        due = session.exec(
            select(PurchaseOrderRow).where(
                PurchaseOrderRow.supplier_id == supplier_id,
                col(PurchaseOrderRow.expected_at) <= now,
            )
        ).all()
    ordered = sum(order.quantity for order in due)
    received = sum(min(order.received_quantity, order.quantity) for order in due)
    on_time = sum(1 for late in lateness if late <= grace.total_seconds())
    extra = allowance(lateness, dates)
    return SupplierPerformance(
        supplier_id=supplier_id,
        receipts=len(lateness),
        on_time_rate=on_time / len(lateness) if lateness else None,
        lateness_p50_seconds=nearest_rank(lateness, 50),
        lateness_p90_seconds=nearest_rank(lateness, 90),
        fill_rate=received / ordered if ordered else None,
        due_units_ordered=ordered,
        due_units_received=received,
        eta_allowance_seconds=extra.total_seconds() if extra is not None else None,
    )
