"""Rule 7: workflows are deterministic; recorded histories replay against the current code.

Two kinds of history: ones this run records (the code agrees with itself), and ones stored in
`tests/histories/`, recorded by earlier versions of the code from lines that were still running
or had just closed. A change that would break a line in flight (a command added, removed or
moved without `workflow.patched`) fails the second kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.contract.lines import line_key
from domain.contract.stock import receipt_workflow_id
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from worker.main import workflow_runner
from workflows.registry import WORKFLOWS


async def test_histories_of_shipped_cancelled_and_receipt_workflows_replay(stack: Stack) -> None:
    sku, shipped, cancelled = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(shipped, sku, quantity=3))
    await stack.start(backorder(cancelled, sku, quantity=2))
    await stack.wait_state(shipped, "waiting")
    await stack.receive(sku, 2, receipt_id=f"rp-{shipped}")
    await stack.wait_line(shipped, lambda line: line["shipped_quantity"] == 2)
    await stack.api.post(f"/v1/backorders/{cancelled}/1/cancel", headers=stack.auth("order"))
    await stack.receive(sku, 1, receipt_id=f"rq-{shipped}")
    await stack.finished(shipped)
    await stack.finished(cancelled)

    client = stack.services.client
    ids = [
        line_key(shipped, "1"),
        line_key(cancelled, "1"),
        receipt_workflow_id("acme", f"rp-{shipped}"),
    ]
    histories = [await client.get_workflow_handle(wid).fetch_history() for wid in ids]
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )

    failures = []
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures.append(f"{history.workflow_id}: {result.replay_failure}")

    assert failures == []
    assert all(len(history.events) > 5 for history in histories)


STORED = {
    path.stem: path.read_text()
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}


@pytest.mark.parametrize("name", STORED)
async def test_histories_recorded_by_earlier_code_still_replay(name: str) -> None:
    history = WorkflowHistory.from_json(name, STORED[name])
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure}"
