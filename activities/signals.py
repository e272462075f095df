"""Telling lines about their allocations.

A receipt can allocate to thousands of lines; a workflow may have at most 2,000 outgoing
signals pending and every one would cost history events, so the fan-out runs here, through a
Temporal client. Signals are at-least-once (a retry sends them again); each line counts an
allocation once, by its id.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain import contract
from domain.models import AllocationNotice, SignalAllocationsInput

MAX_SIGNALS_IN_FLIGHT = 64


class Signaller:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=contract.ACTIVITY_SIGNAL_ALLOCATIONS)
    async def signal_allocations(self, batch: SignalAllocationsInput) -> int:
        """Signal every allocated line but the one named to skip; returns how many were sent."""
        gate = asyncio.Semaphore(MAX_SIGNALS_IN_FLIGHT)

        async def send(notice: AllocationNotice) -> int:
            async with gate:
                handle = self.client.get_workflow_handle(notice.line_key)
                try:
                    await handle.signal(contract.SIGNAL_ALLOCATED, notice)
                except RPCError as exc:
                    # A line that already finished (shipped, or cancelled after this
                    # allocation was released) has nothing left to learn.
                    if exc.status == RPCStatusCode.NOT_FOUND:
                        return 0
                    raise
                return 1

        targets = [n for n in batch.allocations if n.line_key != batch.skip_line_key]
        sent = await asyncio.gather(*(send(notice) for notice in targets))
        activity.logger.info("signalled %d of %d allocations", sum(sent), len(targets))
        return sum(sent)
