"""Inbound supply and honest dates: purchase orders, each waiting line's ETA, availability labels.

How an ETA is computed is in `store.queue`. A new order placed now would stand behind every
waiting line, which is how the availability label gets a date it can keep.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from domain.policy import SupplierDates
from domain.stock import Availability, EtaChange, PurchaseOrderInput
from store import demand, redate, selling
from store.db import Database, lock_sku
from store.queue import (
    DEFAULT_SUPPLIER_DATES,
    InboundSupply,
    inbound_supply,
    open_purchase_orders,
)
from store.stock import UnknownSkuError
from store.tables import LineRow, PurchaseOrderRow, SkuRow, as_utc, utcnow


class PurchaseOrderConflictError(ValueError):
    """A PO cannot change SKU once stock arrived on it."""


def apply_purchase_order(db: Database, change: PurchaseOrderInput) -> None:
    """Create or change a PO (quantity, expected date); the same body again changes nothing."""
    order = change.order
    with db.transaction() as session:
        if lock_sku(session, order.sku) is None:
            raise UnknownSkuError(order.sku)
        row = session.get(PurchaseOrderRow, (change.supplier_id, change.po_id))
        if row is None:
            session.add(
                PurchaseOrderRow(
                    supplier_id=change.supplier_id,
                    po_id=change.po_id,
                    sku=order.sku,
                    quantity=order.quantity,
                    expected_at=order.expected_at,
                    location=order.location,
                )
            )
            return
        if row.sku != order.sku and row.received_quantity > 0:
            raise PurchaseOrderConflictError(
                f"purchase order {change.po_id} already received {row.received_quantity} x "
                f"{row.sku}; it cannot change to {order.sku}"
            )
        row.sku = order.sku
        row.quantity = order.quantity
        row.expected_at = order.expected_at
        row.location = order.location
        row.updated_at = utcnow()


def refresh_etas(
    db: Database,
    sku: str,
    receiving: timedelta,
    dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
) -> list[EtaChange]:
    """Store each waiting line's ETA; returns the lines whose ETA really moved.

    By ranges of the queue (`store.redate`): the lines whose cumulative demand falls within one
    purchase order's share of the inbound supply share its date, and only the lines of a range
    whose stored ETA is another one are read and written; preorders are dated one by one."""
    with db.transaction() as session:
        lock_sku(session, sku)
        orders = open_purchase_orders(session, sku)
        supply = inbound_supply(session, orders, receiving, dates)
        found = redate.moved(session, sku, supply)
        if found.changes:
            # By primary key, in batches: only the lines whose date moved are written.
            session.execute(
                update(LineRow),
                [{"key": change.line_key, "eta": change.eta} for change in found.changes],
            )
        if found.undated:
            demand.add(session, sku, undated_lines=found.undated)
        return found.changes


def line_eta(db: Database, line_key: str) -> datetime | None:
    with db.reading() as session:
        line = session.get(LineRow, line_key)
        return as_utc(line.eta) if line is not None and line.eta else None


def preorder_label(release: datetime) -> str:
    return f"Pre-order: ships from {release:%d %b %Y}"


def preorder_ships_from(
    free_stock: int, release: datetime, supply: InboundSupply, waiting: int
) -> datetime:
    """The date a preorder of one unit started now is given (`store.stock.record_line`): free
    stock is its own and ships from the release; otherwise it stands behind every unit waiting,
    and the PO that covers it, if it comes after the release, dates it. Nothing inbound to
    cover it: the release is the basis of the promise."""
    if free_stock > 0:
        return release
    covering = supply.date_covering(waiting + 1)
    return release if covering is None else max(release, covering)


def availability(
    db: Database,
    sku: str,
    *,
    receiving: timedelta,
    low_stock: int,
    window: timedelta,
    dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
) -> Availability | None:
    """The product-page label: never a date the queue and the inbound POs cannot meet."""
    with db.reading() as session:
        row = session.get(SkuRow, sku)
        if row is None:
            return None
        now = utcnow()
        waiting = demand.waiting_units(session, sku)
        orders = open_purchase_orders(session, sku)
        inbound = sum(order.inbound for order in orders)
        sellable = selling.sellable_quantity(session, row, now)
        facts = {
            "sku": sku,
            "free_stock": row.free_stock,
            "waiting_units": waiting,
            "inbound_units": inbound,
            "sellable_quantity": sellable,
            "backorder_limit": row.backorder_limit,
        }
        release = as_utc(row.release_at) if row.release_at else None
        if sellable == 0:
            return Availability(label="Out of stock", status="out_of_stock", **facts)
        if release is not None and release > now:
            ships_from = preorder_ships_from(
                row.free_stock, release, inbound_supply(session, orders, receiving, dates), waiting
            )
            return Availability(
                label=preorder_label(ships_from),
                status="preorder",
                release_at=release,
                ships_from=ships_from,
                **facts,
            )
        if row.free_stock > low_stock:
            return Availability(label="In stock", status="in_stock", **facts)
        if row.free_stock > 0:
            return Availability(label=f"Only {row.free_stock} left", status="low_stock", **facts)
        # A new order of one unit stands behind every unit already waiting; its range runs
        # from the suppliers' median lateness to the lateness line ETAs use.
        supply = inbound_supply(session, orders, receiving, dates)
        eta = supply.date_covering(waiting + 1)
        likely = inbound_supply(session, orders, receiving, dates, percentile=50)
        soonest = likely.date_covering(waiting + 1)
        if eta is None and sellable is not None:
            # Within the limit but beyond what is inbound: sold, with no date to give yet.
            return Availability(label="Backorder: no ship date yet", status="backorder", **facts)
        if eta is None:
            return Availability(label="Out of stock", status="out_of_stock", **facts)
        first = max(0, ((soonest or eta) - now).days)
        if supply.allowances:
            # Up to the day the ETA falls in (rounded up): the range never ends before the
            # date a line started now is given.
            last = max(first + 1, -((now - eta) // timedelta(days=1)))
        else:
            last = first + max(1, window.days)
        return Availability(
            label=f"Backorder: ships in {first}-{last} days",
            status="backorder",
            ships_from=now + timedelta(days=first),
            ships_by=now + timedelta(days=last),
            **facts,
        )
