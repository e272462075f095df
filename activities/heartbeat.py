"""Heartbeats for the long activities (fan-out of signals, ETA recomputation, alerts).

They are allowed minutes, so without heartbeats an attempt lost with its worker would only be
retried when those minutes ran out, with lines waiting for their signals meanwhile. A background
beat every few seconds lets Temporal see a dead attempt within the heartbeat timeout, however
long one store query or one batch of signals takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

BEAT_SECONDS = 2.0
"""Well inside the workflows' HEARTBEAT_TIMEOUT (10 s); the SDK throttles what it sends."""


@contextlib.asynccontextmanager
async def heartbeating(every: float = BEAT_SECONDS) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
