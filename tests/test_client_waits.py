"""The client's bounded waits on a workflow's answer.

`update.result()` of the Temporal SDK turns its own cancellation into
WorkflowUpdateRPCTimeoutOrCancelledError; `asyncio.wait_for` then raised that in place of its
TimeoutError, and a slow cancel answered 500 instead of 202 (seen on a loaded stack). The SDK's
behaviour is reproduced here by a coroutine, because a refund slow enough to outlast the wait
cannot be made on demand against the real simulators.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

from admission.workflows import within


async def _slow_update_result(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError as exc:
        raise WorkflowUpdateRPCTimeoutOrCancelledError() from exc
    return "cancelled"


async def test_a_wait_that_passes_gives_none_even_when_the_sdk_converts_the_cancellation() -> None:
    assert await within(_slow_update_result(5), timedelta(seconds=0.05)) is None


async def test_an_answer_within_the_wait_is_returned() -> None:
    assert await within(_slow_update_result(0.01), timedelta(seconds=5)) == "cancelled"
    assert await within(_slow_update_result(0.01), None) == "cancelled"
