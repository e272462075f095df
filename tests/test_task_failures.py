"""The suite's watch for failed workflow tasks (`tests.support.task_failures`) sees them: in the
SDK's log of this process, and in the workflow's history."""

from __future__ import annotations

import logging
import uuid

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.task_failures import SDK_LOGGER, TaskFailures, failed_tasks

FAILED_ONCE: set[str] = set()


@workflow.defn(name="FailsItsFirstTask")
class FailsItsFirstTask:
    """A bug that shows once: its first workflow task raises, the retried task succeeds."""

    @workflow.run
    async def run(self) -> str:
        if workflow.info().workflow_id not in FAILED_ONCE:
            FAILED_ONCE.add(workflow.info().workflow_id)
            raise RuntimeError("a bug in workflow code")
        return "done"


@pytest.mark.task_failures_expected
async def test_a_failed_workflow_task_is_seen_in_the_log_and_in_the_history(
    temporal_env: WorkflowEnvironment,
) -> None:
    seen = TaskFailures()
    logging.getLogger(SDK_LOGGER).addHandler(seen)
    queue = f"task-failures-{uuid.uuid4().hex[:8]}"
    workflow_id = f"fails-once-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(
            temporal_env.client,
            task_queue=queue,
            workflows=[FailsItsFirstTask],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await temporal_env.client.start_workflow(
                "FailsItsFirstTask", id=workflow_id, task_queue=queue, result_type=str
            )
            assert await handle.result() == "done"
    finally:
        logging.getLogger(SDK_LOGGER).removeHandler(seen)
    assert len(seen.seen) == 1
    assert "a bug in workflow code" in seen.seen[0]
    found = await failed_tasks(temporal_env.client, [workflow_id])
    assert list(found) == [workflow_id] and len(found[workflow_id]) == 1


async def test_a_workflow_without_failed_tasks_is_not_reported(
    temporal_env: WorkflowEnvironment,
) -> None:
    queue = f"task-failures-{uuid.uuid4().hex[:8]}"
    workflow_id = f"fails-once-{uuid.uuid4().hex[:8]}"
    FAILED_ONCE.add(workflow_id)
    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[FailsItsFirstTask],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await temporal_env.client.start_workflow(
            "FailsItsFirstTask", id=workflow_id, task_queue=queue, result_type=str
        )
        assert await handle.result() == "done"
    assert await failed_tasks(temporal_env.client, [workflow_id]) == {}
