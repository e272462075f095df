"""The survey after the wait: a while after a line's last shipment, one message asks its
customer how the wait went (a score of 1 to 5 and a comment, through the survey's signed link).

SurveySweepWorkflow sends the surveys that are due: a line of this release leaves its survey in
the store with its last shipment's message, and a Temporal schedule starts a sweep every
`BACKORDERS_SURVEY_SWEEP_SECONDS` (`activities.surveys.keep_sweep_schedule`). A shipped line so
costs the server no workflow of its own for its survey, and closes when it ships.

LineSurveyWorkflow is the survey of a line of an earlier release, which started it as it ended
(`workflows.line.life.ask_later`): its id is the line's (`survey:{line}`). Either way the
message's idempotency key is the line's: one survey per line, whatever is retried.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.contract.lines import (
    SEND_DUE_SURVEYS,
    SEND_MESSAGE,
    SURVEY_SWEEP_WORKFLOW,
    SURVEY_WORKFLOW,
)
from domain.line.messages import SurveyInput
from workflows.calls import execute

SWEEP_BATCH = 200
"""Surveys one activity sends; a sweep asks again while a batch comes back full."""
SWEEP_BATCHES = 50
"""At most this many batches a sweep (10,000 surveys): the next sweep takes the rest, and a
run's history stays short."""


@workflow.defn(name=SURVEY_SWEEP_WORKFLOW.name)
class SurveySweepWorkflow:
    @workflow.run
    async def run(self) -> int:
        sent = 0
        for _ in range(SWEEP_BATCHES):
            handled = await execute(SEND_DUE_SURVEYS, SWEEP_BATCH, summary="send the due surveys")
            sent += handled
            if handled < SWEEP_BATCH:
                break
        return sent


@workflow.defn(name=SURVEY_WORKFLOW.name)
class LineSurveyWorkflow:
    @workflow.run
    async def run(self, survey: SurveyInput) -> None:
        wait = survey.ask_at - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait, summary="until it is time to ask how the wait went")
        try:
            await execute(SEND_MESSAGE, survey.message(), summary="message: survey")
        except ActivityError as exc:
            # A refused message is not retried (the contract's policy); the line is long done.
            workflow.logger.warning("the survey message was refused: %s", exc.cause)
