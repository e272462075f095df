"""The procedure for changing a workflow while lines wait (README: "Changing a workflow while
lines wait"), shown on a stored history of a line that was waiting when it was recorded.

A change that adds a command on a path running lines have already passed breaks them: their
next replay meets a command the history does not have. The same change behind
`workflow.patched` leaves recorded lines on the old path and sends new ones down the new.

The change is made by monkeypatching the line's first step (`workflows.line.life.begin`), so
these replays run without the sandbox (which would import a fresh, unchanged copy of the module).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from domain import contract
from workflows.line import life
from workflows.line.run import LineRun
from workflows.line.workflow import BackorderLineWorkflow

WAITING = Path(__file__).parent / "histories" / "line-waiting-with-offer-0-backorder-v2.json"

Begin = Callable[[LineRun], Awaitable[None]]


def _tell_ops_the_tier_again(original: Begin, *, patch_id: str | None) -> Begin:
    """The example change: after confirming the backorder, set the tier attribute again."""

    async def changed(line: LineRun) -> None:
        await original(line)
        if patch_id is None or workflow.patched(patch_id):
            tier = line.request.customer.tier.value
            workflow.upsert_search_attributes([contract.SA_CUSTOMER_TIER.value_set(tier)])

    return changed


async def _replay() -> Exception | None:
    history = WorkflowHistory.from_json("waiting-line", WAITING.read_text())
    replayer = Replayer(
        workflows=[BackorderLineWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


async def test_the_stored_waiting_line_replays_on_the_current_code() -> None:
    assert await _replay() is None


async def test_an_unpatched_change_breaks_a_waiting_line(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = _tell_ops_the_tier_again(life.begin, patch_id=None)
    monkeypatch.setattr(life, "begin", changed)
    failure = await _replay()
    assert failure is not None
    assert "Nondeterminism" in str(failure) or "TMPRL1100" in str(failure)


async def test_the_same_change_behind_a_patch_keeps_it_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changed = _tell_ops_the_tier_again(life.begin, patch_id="tier-again")
    monkeypatch.setattr(life, "begin", changed)
    assert await _replay() is None
