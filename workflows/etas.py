"""Asking the store for fresh ETAs, from any workflow that changes a SKU's queue or supply."""

from __future__ import annotations

from datetime import datetime

from domain.contract.stock import REFRESH_ETAS
from domain.stock import RefreshEtas
from workflows.calls import execute


async def refresh_etas(sku: str, *, for_line: str | None = None) -> datetime | None:
    """Recompute the SKU's ETAs; lines whose ETA moved are told. Returns `for_line`'s ETA."""
    return await execute(
        REFRESH_ETAS, RefreshEtas(sku=sku, for_line=for_line), summary=f"recompute ETAs of {sku}"
    )
