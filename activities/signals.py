"""Telling lines about their allocations.

A receipt can allocate to thousands of lines; a workflow may have at most 2,000 outgoing
signals pending and every one would cost history events, so the fan-out runs here, through a
Temporal client. Signals are at-least-once (a retry sends them again); each line counts an
allocation once, by its id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.heartbeat import heartbeating
from domain.contract.lines import ALLOCATED, RELEASE_MOVED, SHIP_BEFORE_RELEASE
from domain.contract.stock import (
    SIGNAL_ALLOCATIONS,
    SIGNAL_RELEASE_MOVES,
    SIGNAL_SHIP_BEFORE_RELEASE,
)
from domain.line.input import ReleaseMoved, ShipBeforeRelease
from domain.stock import SignalAllocationsInput, SignalReleaseMoves, SignalShipBeforeRelease

MAX_SIGNALS_IN_FLIGHT = 256
"""Signals in flight per fan-out. The lines a receipt wakes run their shipments in the same
worker and on the same server while the rest wait for their signal: at 64 in flight the last
of 1,000 lines per receipt (two receipts at once) heard 5.8-7.5 s after the receipt's 2xx, at
256 in 3.7-3.9 s (`python -m bench --only surge`, docs/performance.md)."""


async def signal_lines(
    client: Client, signal: str, payloads: Sequence[tuple[str, BaseModel]]
) -> int:
    """Send `signal` to each (workflow id, payload), a bounded number at a time; returns how
    many arrived. A line that already finished has nothing left to learn: skipped, not an error."""
    gate = asyncio.Semaphore(MAX_SIGNALS_IN_FLIGHT)

    async def send(workflow_id: str, payload: BaseModel) -> int:
        async with gate:
            try:
                await client.get_workflow_handle(workflow_id).signal(signal, payload)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return 0
                raise
            return 1

    return sum(await asyncio.gather(*(send(wid, payload) for wid, payload in payloads)))


class Signaller:
    def __init__(self, client: Client) -> None:
        self.client = client

    @SIGNAL_ALLOCATIONS.defn
    async def signal_allocations(self, batch: SignalAllocationsInput) -> int:
        """Signal every allocated line but the one named to skip; returns how many were sent."""
        targets = [n for n in batch.allocations if n.line_key != batch.skip_line_key]
        async with heartbeating():
            sent = await signal_lines(
                self.client, ALLOCATED.name, [(n.line_key, n) for n in targets]
            )
        activity.logger.info("signalled %d of %d allocations", sent, len(targets))
        return sent

    @SIGNAL_RELEASE_MOVES.defn
    async def signal_release_moves(self, batch: SignalReleaseMoves) -> int:
        """Tell each preorder line its new release date; a line counts one date once."""
        async with heartbeating():
            return await signal_lines(
                self.client,
                RELEASE_MOVED.name,
                [
                    (move.line_key, ReleaseMoved(release_at=move.release_at, eta=move.eta))
                    for move in batch.moves
                ],
            )

    @SIGNAL_SHIP_BEFORE_RELEASE.defn
    async def signal_ship_before_release(self, batch: SignalShipBeforeRelease) -> int:
        """Tell each open preorder line of the SKU that its held stock ships now; started in
        queue order, as an arrival's allocations are (a repeat changes nothing)."""
        signal = ShipBeforeRelease(sku=batch.sku)
        async with heartbeating():
            return await signal_lines(
                self.client, SHIP_BEFORE_RELEASE.name, [(key, signal) for key in batch.line_keys]
            )
