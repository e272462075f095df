"""Asking the store for fresh ETAs, from any workflow that changes a SKU's queue or supply."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from domain.contract.options import FAN_OUT_TIMEOUT, HEARTBEAT_TIMEOUT, RETRY
from domain.contract.stock import REFRESH_ETAS
from domain.stock import RefreshEtas


async def refresh_etas(sku: str, *, for_line: str | None = None) -> datetime | None:
    """Recompute the SKU's ETAs; lines whose ETA moved are told. Returns `for_line`'s ETA."""
    eta: datetime | None = await workflow.execute_activity(
        REFRESH_ETAS.name,
        RefreshEtas(sku=sku, for_line=for_line),
        result_type=datetime | None,  # type: ignore[arg-type]
        start_to_close_timeout=FAN_OUT_TIMEOUT,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RETRY,
        summary=f"recompute ETAs of {sku}",
    )
    return eta
