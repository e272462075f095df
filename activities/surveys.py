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
        each leaves the store once sent, or once the notification service refused it for
        good. Answers how many left. A retry sends none twice: the message is recorded under
        the line's survey key before its survey leaves (`send_message` finds it)."""
        due = await asyncio.to_thread(records.due_surveys, self.db, datetime.now(UTC), most)
        gate = asyncio.Semaphore(SURVEYS_IN_FLIGHT)

        async def ask(survey: SurveyInput) -> None:
            async with gate:
                try:
                    await self.services.send_message(survey.message())
                except ApplicationError as exc:
                    if exc.type != contract.ERROR_OUTSIDE_SERVICE_REJECTED:
                        raise
                    # As the line's own messages: a refusal for good is given up, not retried.
                    log.warning("the survey of %s was refused: %s", survey.line_key, exc)
                await asyncio.to_thread(records.survey_asked, self.db, survey.line_key)

        async with heartbeating():
            await asyncio.gather(*(ask(survey) for survey in due))
        if due:
            activity.logger.info("sent %d surveys", len(due))
        return len(due)


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
            if current.spec.intervals == schedule.spec.intervals:
                return None
            # Ops may have paused it, with a note saying why: that stays as they left it.
            return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=current.state))

        await client.get_schedule_handle(schedule_id).update(update)
