"""The survey after the wait, over stub activities: a shipped line closes at once and leaves a
workflow of its own that asks its customer, once, `survey_after_days` after the last shipment;
a cancelled line, or a policy without a survey, asks nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.surveys import SurveyActivities
from domain.contract.lines import CANCEL, survey_workflow_id
from domain.line.effects import CancelRequest
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.policy import ServicePolicy
from tests.workflows.stubs import SECONDS_POLICY, LineHarness, StubStore, line_request
from workflows.line.workflow import BackorderLineWorkflow
from workflows.survey import LineSurveyWorkflow


@asynccontextmanager
async def survey_worker(client: Client, store: StubStore) -> AsyncIterator[LineHarness]:
    """A worker running the line's workflow and the survey's, over `store`'s stubs."""
    task_queue = f"survey-test-{uuid.uuid4().hex[:8]}"
    # The real activity starts the survey's workflow; the store's stubs do the rest.
    starts = SurveyActivities(client, task_queue)
    stubs = [stub for stub in store.activities() if stub != store.start_survey]
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BackorderLineWorkflow, LineSurveyWorkflow],
        activities=[*stubs, starts.start_survey],
    ):
        yield LineHarness(client, task_queue, store)


ASK_AFTER = SECONDS_POLICY.model_copy(update={"survey_after_days": 1.5})


async def test_a_shipped_line_closes_and_its_customer_is_asked_once_later(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    store = StubStore(free_stock=5)
    async with survey_worker(client, store) as line:
        handle = await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=ASK_AFTER)
        status = await handle.result()
        assert status.state is LineState.SHIPPED
        assert MessageKind.SURVEY not in store.kinds()  # the line did not wait for it
        survey = client.get_workflow_handle(survey_workflow_id(handle.id))
        await asyncio.wait_for(survey.result(), 20)
    survey_messages = [m for m in store.messages if m.kind is MessageKind.SURVEY]
    assert [(m.line_key, m.event_key) for m in survey_messages] == [(handle.id, "survey")]
    assert (await survey.describe()).status is WorkflowExecutionStatus.COMPLETED
    # Its start was delayed until the time to ask: no workflow task and no timer before it.
    events = (await survey.fetch_history()).events
    started = events[0].workflow_execution_started_event_attributes
    assert started.first_workflow_task_backoff.ToTimedelta() > timedelta(seconds=0.5)
    assert not any(event.HasField("timer_started_event_attributes") for event in events)


async def test_a_cancelled_line_or_a_policy_without_survey_asks_nothing(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    store = StubStore(free_stock=2)  # the first line ships at once, the second waits
    no_survey = SECONDS_POLICY.model_copy(update={"survey_after_days": None})
    async with survey_worker(client, store) as line:
        shipped = await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=no_survey)
        assert (await shipped.result()).state is LineState.SHIPPED
        cancelled = await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=ASK_AFTER)
        await cancelled.execute_update(
            CANCEL.name, CancelRequest(reason="asked", requested_by="customer")
        )
        assert (await cancelled.result()).state is LineState.CANCELLED
    for handle in (shipped, cancelled):
        query = f"WorkflowId = '{survey_workflow_id(handle.id)}'"
        assert [found.id async for found in client.list_workflows(query)] == []
    assert MessageKind.SURVEY not in store.kinds()


def test_the_policy_gives_each_line_its_survey_delay() -> None:
    policy = ServicePolicy.model_validate({"survey_after_days": 2})
    assert policy.for_channel(line_request("x").channel).survey_after_days == 2
    assert (
        ServicePolicy.model_validate({"survey_after_days": None})
        .for_channel(line_request("x").channel)
        .survey_after_days
        is None
    )
