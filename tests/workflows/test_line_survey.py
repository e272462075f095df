"""The survey after the wait, over stub activities: a shipped line closes at once, and its last
shipment's message leaves its survey due `survey_after_days` after that shipment (the store
keeps it for the sweep: `tests/test_surveys.py` runs that on real parts); a cancelled line, or a
policy without a survey, leaves none. No line of this release starts a survey workflow."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.contract.lines import CANCEL, LINE_RELEASE, survey_workflow_id
from domain.line.effects import CancelRequest
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.policy import ServicePolicy
from tests.workflows.stubs import SECONDS_POLICY, StubStore, line_request, line_worker
from worker.main import workflow_runner
from workflows.line.workflow import BackorderLineWorkflow

replayer = Replayer(
    workflows=[BackorderLineWorkflow],
    data_converter=pydantic_data_converter,
    workflow_runner=workflow_runner(),
)

ASK_AFTER = SECONDS_POLICY.model_copy(update={"survey_after_days": 1.5})


async def patch_markers(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The ids of the patch markers a run recorded."""
    found = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_patch":
                data = marker.details["patch-data"].payloads[0].data
                found.append(json.loads(data)["id"])
    return found


async def no_survey_workflows(env: WorkflowEnvironment, line_keys: list[str]) -> bool:
    for key in line_keys:
        query = f"WorkflowId = '{survey_workflow_id(key)}'"
        if [found.id async for found in env.client.list_workflows(query)]:
            return False
    return True


async def test_a_shipped_line_closes_and_leaves_its_survey_due_with_its_last_message(
    temporal_env: WorkflowEnvironment,
) -> None:
    store = StubStore(free_stock=10)
    async with line_worker(temporal_env.client, store) as line:
        handles = [
            await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=ASK_AFTER),
            # As the API starts it: the release declared in its input, no marker recorded.
            await line.start(
                line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=ASK_AFTER, release=LINE_RELEASE
            ),
            # Started by the release before, shipping on this code: it takes the change too.
            await line.start(
                line_request(f"wf-{uuid.uuid4().hex[:10]}"),
                policy=ASK_AFTER,
                release="line-release-2027-02",
            ),
        ]
        for handle in handles:
            assert (await handle.result()).state is LineState.SHIPPED
    for handle in handles:
        messages = [m for m in store.messages if m.line_key == handle.id]
        shipped = [m for m in messages if m.kind is MessageKind.SHIPPED]
        assert len(shipped) == 1 and shipped[0].shipment is not None
        assert shipped[0].survey_at == shipped[0].shipment.created_at + timedelta(seconds=1.5)
        assert [m.kind for m in messages if m.survey_at is not None] == [MessageKind.SHIPPED]
    markers = [await patch_markers(handle) for handle in handles]
    # The release's marker, first thing; none; the marker of the release that gathers the
    # change, when the line of the release before asks it (`workflows.line.versions`).
    assert markers == [["line-release-2027-03"], [], ["line-release-2027-03"]]
    for handle in handles:  # and each replays as it ran
        history = await handle.fetch_history()
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure
    assert MessageKind.SURVEY not in store.kinds()  # the line did not wait for it
    assert store.surveys == []  # no survey workflow started
    assert await no_survey_workflows(temporal_env, [handle.id for handle in handles])


async def test_a_cancelled_line_or_a_policy_without_survey_leaves_none(
    temporal_env: WorkflowEnvironment,
) -> None:
    store = StubStore(free_stock=2)  # the first line ships at once, the second waits
    no_survey = SECONDS_POLICY.model_copy(update={"survey_after_days": None})
    async with line_worker(temporal_env.client, store) as line:
        shipped = await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=no_survey)
        assert (await shipped.result()).state is LineState.SHIPPED
        cancelled = await line.start(line_request(f"wf-{uuid.uuid4().hex[:10]}"), policy=ASK_AFTER)
        await cancelled.execute_update(
            CANCEL.name, CancelRequest(reason="asked", requested_by="customer")
        )
        assert (await cancelled.result()).state is LineState.CANCELLED
    assert any(m.kind is MessageKind.SHIPPED for m in store.messages)
    assert all(m.survey_at is None for m in store.messages)
    assert store.surveys == []
    assert await no_survey_workflows(temporal_env, [shipped.id, cancelled.id])


def test_the_policy_gives_each_line_its_survey_delay() -> None:
    policy = ServicePolicy.model_validate({"survey_after_days": 2})
    assert policy.for_channel(line_request("x").channel).survey_after_days == 2
    assert (
        ServicePolicy.model_validate({"survey_after_days": None})
        .for_channel(line_request("x").channel)
        .survey_after_days
        is None
    )
