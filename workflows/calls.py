"""Short calls from a line: a local activity first, a regular activity if that does not succeed.

A regular activity costs a line three history events and one more workflow task on the server;
a local activity runs inside the workflow task that asks for it and leaves one marker event.
Almost every call a line makes is short (a store transaction, a message, a shipment request),
so on the happy path the line takes two workflow tasks instead of seven (README: Performance).

A local activity suits a call only while it is short. When one has not succeeded within
`LOCAL_BUDGET` (a service is down, the store is locked), the same call is made again as a
regular activity: retried by the server without limit, visible in the UI as a pending activity
with its last failure, and costing no history while it retries. Every call is idempotent (by
line, event or sequence key), so a local attempt that did reach the service is not repeated.

Fan-outs (signalling many lines, recomputing a queue's ETAs) stay regular activities: they may
take minutes and they heartbeat.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, RetryState

from domain.contract import Activity, Signal

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

LOCAL_FIRST_PATCH = "local-first-calls"
"""Runs that began before this code call every activity as a regular one. A line asks it first
thing in a run (through `workflows.line.versions`): a run recorded by earlier code has no marker
and replays every call as a regular activity."""

LOCAL_BUDGET = timedelta(seconds=10)
"""How long a call may be tried locally, retries included, before it goes to the server. Below
the workflow task timeout (10 s), so a healthy call never makes the task heartbeat."""


def _final(failure: BaseException, retry: RetryPolicy) -> bool:
    """A failure the regular activity would also give up on at once."""
    if not isinstance(failure, ApplicationError):
        return False
    return failure.non_retryable or failure.type in (retry.non_retryable_error_types or ())


def _as_activity_error(failure: FailureError, activity: str) -> ActivityError:
    """A local activity may resolve to its bare failure; callers expect what a regular one
    raises, an ActivityError (raise it `from` the failure, its cause)."""
    return ActivityError(
        f"local activity {activity} failed: {failure}",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=activity,
        activity_id="",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )


async def execute(spec: Activity[I, O], arg: I, *, summary: str, local: bool = False) -> O:
    """Run the activity `spec` with `arg`, returning its result or raising its final failure
    exactly as `workflow.execute_activity` would.

    `local`: the calling run makes short calls local-first (`LOCAL_FIRST_PATCH`); the call then goes
    local first only if the contract allows it for this activity (`Activity.local`)."""
    if local and spec.local:
        try:
            return cast(
                O,
                await workflow.execute_local_activity(
                    spec.name,
                    arg,
                    result_type=spec.result,
                    start_to_close_timeout=min(spec.start_to_close, LOCAL_BUDGET),
                    schedule_to_close_timeout=LOCAL_BUDGET,
                    retry_policy=spec.retry,
                    summary=summary,
                ),
            )
        except FailureError as error:
            failure = error.cause if isinstance(error, ActivityError) else error
            if failure is not None and _final(failure, spec.retry):
                if isinstance(error, ActivityError):
                    raise
                raise _as_activity_error(error, spec.name) from error
            workflow.logger.info("%s did not succeed locally (%s); retrying it", spec.name, error)
    return cast(
        O,
        await workflow.execute_activity(
            spec.name,
            arg,
            result_type=spec.result,
            start_to_close_timeout=spec.start_to_close,
            heartbeat_timeout=spec.heartbeat,
            retry_policy=spec.retry,
            summary=summary,
        ),
    )


async def signal(handle: workflow.ExternalWorkflowHandle[Any], spec: Signal[I], arg: I) -> None:
    """Send the signal `spec` to another workflow."""
    await handle.signal(spec.name, arg)
