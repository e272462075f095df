"""LineSurveyWorkflow: a while after a line's last shipment, one message asks its customer how
the wait went (a score of 1 to 5 and a comment, through the survey's signed link).

A workflow of its own, started by the line as it ends (`workflows.line.life.ask_later`), so
that the line closes when it ships instead of staying open for weeks for one message. Its id
is the line's (`survey:{line}`) and the message's idempotency key is the line's too: one survey
per line, whatever is retried.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.contract.lines import SEND_MESSAGE, SURVEY_WORKFLOW
from domain.line.messages import MessageInput, MessageKind, SurveyInput
from workflows.calls import execute


@workflow.defn(name=SURVEY_WORKFLOW.name)
class LineSurveyWorkflow:
    @workflow.run
    async def run(self, survey: SurveyInput) -> None:
        wait = survey.ask_at - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait, summary="until it is time to ask how the wait went")
        message = MessageInput(
            line_key=survey.line_key,
            request=survey.request,
            kind=MessageKind.SURVEY,
            event_key="survey",
            ship_by=survey.ship_by,
        )
        try:
            await execute(SEND_MESSAGE, message, summary="message: survey")
        except ActivityError as exc:
            # A refused message is not retried (the contract's policy); the line is long done.
            workflow.logger.warning("the survey message was refused: %s", exc.cause)
