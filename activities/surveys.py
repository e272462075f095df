"""Starting the survey after the wait: the line, as it ends, has its survey workflow started by
this activity (`domain.contract.lines.START_SURVEY`)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.contract.lines import START_SURVEY, SURVEY_WORKFLOW, survey_workflow_id
from domain.line.messages import SurveyInput


class SurveyActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    @START_SURVEY.defn
    async def start_survey(self, survey: SurveyInput) -> None:
        """One survey per line: a survey already running is kept, one already finished is not
        started again.

        The survey starts delayed until it is time to ask: the server records its start now
        and gives it its first workflow task then, so that a shipped line costs no survey task
        and no timer until the day the customer is asked (the workflow still sleeps whatever
        is left, as runs started without a delay do)."""
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
