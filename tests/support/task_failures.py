"""Rule 9 across the suite: any workflow task that fails during a test fails that test.

A workflow task fails when workflow code raises something other than a Temporal failure (a bug,
or a payload it could not handle): Temporal then retries the task forever and the workflow is
stuck. Two ways to see it:

- in this process (the test stacks' workers): the SDK logs every such failure with the
  identifier `WorkflowTaskFailure`; the autouse fixture below collects them during each test
  and fails the test that was running;
- anywhere (workers in processes of their own): the workflow's history holds a
  `WorkflowTaskFailed` event; `failed_tasks` scans the histories of given workflows.

A test that makes a task fail on purpose says so with `@pytest.mark.task_failures_expected`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

SDK_LOGGER = "temporalio.worker._workflow_instance"
IDENTIFIER = "__temporal_error_identifier"


class TaskFailures(logging.Handler):
    """Collects the SDK's reports of failed workflow tasks."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, IDENTIFIER, None) == "WorkflowTaskFailure":
            cause = f": {record.exc_info[1]!r}" if record.exc_info else ""
            self.seen.append(f"{record.getMessage()}{cause}")


@pytest.fixture(autouse=True)
def no_workflow_task_fails(request: pytest.FixtureRequest) -> Iterator[None]:
    failures = TaskFailures()
    logger = logging.getLogger(SDK_LOGGER)
    logger.addHandler(failures)
    try:
        yield
    finally:
        logger.removeHandler(failures)
    if failures.seen and request.node.get_closest_marker("task_failures_expected") is None:
        pytest.fail(
            f"{len(failures.seen)} workflow task(s) failed during this test:\n"
            + "\n".join(failures.seen[:10]),
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "task_failures_expected: the test makes a workflow task fail on purpose"
    )


async def failed_tasks(client: Client, workflow_ids: Iterable[str]) -> dict[str, list[int]]:
    """The ids of the `WorkflowTaskFailed` events in each workflow's history (its latest run);
    workflows without any are left out."""
    found: dict[str, list[int]] = {}
    for workflow_id in workflow_ids:
        handle = client.get_workflow_handle(workflow_id)
        events = [
            event.event_id
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        if events:
            found[workflow_id] = events
    return found
