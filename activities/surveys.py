"""The survey after the wait.

A line of this release leaves its survey due in the store with its last shipment's message;
the survey sweep (`workflows.survey.SurveySweepWorkflow`, started by a Temporal schedule) sends
the due ones with `send_due_surveys`. Lines of an earlier release start a survey workflow of
their own as they end (`start_survey`), which sleeps until it is time to ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.heartbeat import heartbeating
from activities.services import OutsideServices
from domain import contract
from domain.contract.lines import (
    SEND_DUE_SURVEYS,
    START_SURVEY,
    SURVEY_SWEEP_WORKFLOW,
    SURVEY_WORKFLOW,
    survey_schedule_id,
    survey_workflow_id,
)
from domain.line.messages import SurveyInput
from store import records
from store.db import Database

log = logging.getLogger("backorders.surveys")

SURVEYS_IN_FLIGHT = 8
"""Survey messages sent at once by one sweep: a sweep is a background job, and must not crowd
out the lines' own calls to the notification service."""

SWEEP_TIMEOUT = timedelta(hours=1)
"""A sweep run that has not ended by then is given up; the next one takes over."""


class SurveyActivities:
    def __init__(self, client: Client, task_queue: str, services: OutsideServices) -> None:
        self.client = client
        self.task_queue = task_queue
        self.services = services

    @property
    def db(self) -> Database:
        return self.services.db

    @START_SURVEY.defn
    async def start_survey(self, survey: SurveyInput) -> None:
        """One survey per line: a survey already running is kept, one already finished is not
        started again.

        The survey starts delayed until it is time to ask: the server records its start now
        and gives it its first workflow task then (the workflow still sleeps whatever is left,
        as runs started without a delay do)."""
        delay = survey.ask_at - datetime.now(UTC)
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.client.start_workflow(
                SURVEY_WORKFLOW.name,
                survey,
                id=survey_workflow_id(survey.line_key),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                start_delay=delay if delay > timedelta(0) else None,
                static_summary="ask the customer how the wait went",
            )

    @SEND_DUE_SURVEYS.defn
    async def send_due_surveys(self, most: int) -> int:
        """Send up to `most` of the surveys due now, the longest due first, a few at a time;
        answers how many were handled. A survey leaves the store once sent, or once given up:
        refused for good by the notification service, or one that cannot be made (a row that
        no longer reads, a template that fails), each logged. A survey that failed for a
        passing reason (an outage) stays, the others are still sent, and the attempt fails at
        the end so that Temporal retries it. None is sent twice: its message is recorded under
        the line's survey key before the survey leaves (`send_message` finds it)."""
        due = await asyncio.to_thread(records.due_surveys, self.db, datetime.now(UTC), most)
        gate = asyncio.Semaphore(SURVEYS_IN_FLIGHT)

        async def ask(line_key: str, survey_json: str) -> None:
            async with gate:
                try:
                    await self.services.send_message(
                        SurveyInput.model_validate_json(survey_json).message()
                    )
                except (ApplicationError, ValidationError) as exc:
                    if isinstance(exc, ApplicationError) and not _given_up(exc):
                        raise
                    log.warning("the survey of %s is given up: %s", line_key, exc)
                await asyncio.to_thread(records.survey_asked, self.db, line_key)

        async with heartbeating():
            outcomes = await asyncio.gather(
                *(ask(line_key, survey_json) for line_key, survey_json in due),
                return_exceptions=True,
            )
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failed:
            first = failed[0]
            raise RuntimeError(
                f"{len(failed)} of {len(due)} due surveys not sent, tried again: {first!r}"
            ) from first
        if due:
            activity.logger.info("sent %d surveys", len(due))
        return len(due)


def _given_up(error: ApplicationError) -> bool:
    """A failure a line's own message would give up on too: a refusal for good, or a failure
    that says it is not worth retrying (a template that does not render)."""
    return error.non_retryable or error.type == contract.ERROR_OUTSIDE_SERVICE_REJECTED


def sweep_schedule(task_queue: str, every: timedelta) -> Schedule:
    """The survey sweep, every `every`, on the stock task queue; a sweep still running when
    the next is due is left to finish (the next is skipped)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SURVEY_SWEEP_WORKFLOW.name,
            id=f"survey-sweep-{task_queue}",
            task_queue=contract.stock_task_queue(task_queue),
            execution_timeout=SWEEP_TIMEOUT,
            static_summary="send the surveys that are due",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _kept(schedule: Schedule) -> tuple[object, ...]:
    """What a worker keeps of the sweep's schedule: when it runs, what it starts, and how."""
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    return (
        schedule.spec.intervals,
        action.workflow,
        action.task_queue,
        action.execution_timeout,
        schedule.policy.overlap,
    )


async def keep_sweep_schedule(client: Client, task_queue: str, every: timedelta) -> None:
    """Create the survey sweep's schedule, or bring the one there to `every`: each worker does
    this as it starts, so the schedule follows the newest setting (a pause is kept)."""
    schedule = sweep_schedule(task_queue, every)
    schedule_id = survey_schedule_id(task_queue)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        async def update(found: ScheduleUpdateInput) -> ScheduleUpdate | None:
            current = found.description.schedule
            if _kept(current) == _kept(schedule):
                return None
            # Ops may have paused it, with a note saying why: that stays as they left it.
            return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=current.state))

        await client.get_schedule_handle(schedule_id).update(update)
