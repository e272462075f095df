"""Supply-side activities: purchase orders in, and every waiting line's ETA kept honest.

A line is told its new ETA (signal `eta_changed`) only when it really moved; the line decides
whether that is news for its customer and whether a delay notice is now due.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.signals import signal_lines
from activities.store_activities import run_in_store
from domain.contract.lines import ETA_CHANGED
from domain.contract.stock import APPLY_PURCHASE_ORDER, REFRESH_ETAS
from domain.line.input import EtaUpdate
from domain.policy import ServicePolicy
from domain.stock import PurchaseOrderInput, RefreshEtas
from store import supply
from store.db import Database


class SupplyActivities:
    def __init__(self, db: Database, client: Client, policy: ServicePolicy) -> None:
        self.db = db
        self.client = client
        self.receiving = policy.days(policy.receiving_days)
        self.dates = policy.supplier_dates

    @APPLY_PURCHASE_ORDER.defn
    async def apply_purchase_order(self, change: PurchaseOrderInput) -> None:
        try:
            await run_in_store(lambda: supply.apply_purchase_order(self.db, change))
        except supply.PurchaseOrderConflictError as exc:
            raise ApplicationError(str(exc), non_retryable=True) from exc

    @REFRESH_ETAS.defn
    async def refresh_etas(self, refresh: RefreshEtas) -> datetime | None:
        """Recompute the SKU's ETAs and signal the lines whose ETA moved; returns the ETA of
        `for_line` (told through this answer, not a signal)."""
        async with heartbeating():
            changes = await run_in_store(
                lambda: supply.refresh_etas(self.db, refresh.sku, self.receiving, self.dates)
            )
            told = [c for c in changes if c.line_key != refresh.for_line]
            await signal_lines(
                self.client,
                ETA_CHANGED.name,
                [(c.line_key, EtaUpdate(eta=c.eta)) for c in told],
            )
            line = refresh.for_line
            return (
                None if line is None else await run_in_store(lambda: supply.line_eta(self.db, line))
            )
