"""The procedure for changing a workflow while lines wait (README: "Changing a workflow while
lines wait"), shown on a stored history of a line that was waiting when it was recorded.

A change that adds a command on a path running lines have already passed breaks them: their
next replay meets a command the history does not have. The same change behind
`workflow.patched` leaves recorded lines on the old path and sends new ones down the new.

The change is made by monkeypatching the line's first step (`workflows.line.life.begin`), so
these replays run without the sandbox (which would import a fresh, unchanged copy of the module).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from domain import contract
from domain.contract.lines import line_key
from domain.line.state import LineState
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from tests.workflows.stubs import (
    LineHarness,
    StubStore,
    line_request,
    line_worker,
    status_when,
)
from workflows.line import life, versions
from workflows.line.run import LineRun
from workflows.line.workflow import BackorderLineWorkflow

HISTORIES = Path(__file__).parent / "histories"
WAITING = HISTORIES / "line-waiting-with-offer-0-backorder-v2.json"
WORKFLOWS = Path(__file__).parent.parent / "workflows"

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


def _patch_markers(history: WorkflowHistory) -> list[str]:
    """The changes a run recorded a marker for, in order."""
    found = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_patch":
                payload = marker.details["patch-data"].payloads[0]
                found.append(json.loads(payload.data)["id"])
    return found


def test_starters_declare_the_newest_release_the_workers_know() -> None:
    """A new release is added to `versions.RELEASES` and to the contract together."""
    assert contract.lines.LINE_RELEASE == versions.NEWEST


def test_every_gathered_change_is_one_the_line_asks() -> None:
    """A gathered name that no code asks (a typo) would leave its change asked by name."""
    source = "\n".join(path.read_text() for path in WORKFLOWS.rglob("*.py"))
    for change in set().union(*(changes for _, changes in versions.RELEASES)):
        assert f'"{change}"' in source.replace(f'"{change}",\n', ""), change


def test_a_run_recorded_before_the_release_keeps_a_marker_for_each_change() -> None:
    recorded = WorkflowHistory.from_json("waiting-line", WAITING.read_text())
    markers = _patch_markers(recorded)
    assert not set(markers) & {marker for marker, _ in versions.RELEASES}
    assert "local-first-calls" not in markers  # v2 ran before local-first calls
    newer = WorkflowHistory.from_json(
        "line", (HISTORIES / "line-cancelled-0-backorder-v5.json").read_text()
    )
    assert set(_patch_markers(newer)) >= {"local-first-calls", "one-message-per-moment"}


def test_a_run_recorded_with_an_earlier_release_keeps_that_release_s_one_marker() -> None:
    """Such a run replays by its one marker, and a change gathered by a later release is asked
    of it by its own name (tests/test_replay.py replays it on this code)."""
    first, *later = versions.RELEASES
    recorded = WorkflowHistory.from_json(
        "line", (HISTORIES / "line-cancelled-0-backorder-v6.json").read_text()
    )
    assert _patch_markers(recorded) == [first[0]]
    assert later and all(not changes & first[1] for _, changes in later)


async def test_a_new_run_declared_by_its_starter_records_no_marker(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=1))
    await stack.wait_state(order, "waiting")
    await stack.receive(sku, 1, receipt_id=f"r-{order}")
    await stack.finished(order)
    handle = stack.services.client.get_workflow_handle(line_key(order, "1"))
    history = await handle.fetch_history()
    # The API declared this code's release in the line's input: no marker, no upsert of
    # TemporalChangeVersion.
    markers = _patch_markers(history)
    assert markers == [], markers
    # The run took the gathered changes all the same: its short calls went local-first.
    local = [
        event
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert local, "a run of this release makes its short calls local-first"
    # It queued itself locally: no activity task was scheduled to queue it.
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "record_line" not in scheduled, scheduled
    # The receipt's stock showed its new state and the receipt in one upsert.
    upserts = [
        set(
            event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        )
        for event in history.events
        if event.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    assert {contract.SA_STATE.name, contract.SA_RECEIPT_ID.name} in upserts, upserts
    # ... and it shipped in the task that got the stock: the receipt, the state "allocated"
    # and then "shipped" went to the server as one upsert (the last one it made).
    after_stock = upserts[upserts.index({contract.SA_STATE.name, contract.SA_RECEIPT_ID.name}) :]
    assert len(after_stock) == 1, upserts
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(contract.SA_STATE) == "shipped"
    assert shown.get(contract.SA_RECEIPT_ID) == f"r-{order}"


async def test_a_run_that_declares_no_release_records_the_newest_marker(
    temporal_env: WorkflowEnvironment,
) -> None:
    store = StubStore(free_stock=1)
    async with line_worker(temporal_env.client, store) as line:
        handle = await line.start(line_request(new_id("wf")))
        await handle.result()
    history = await handle.fetch_history()
    assert _patch_markers(history) == [versions.NEWEST]
    assert await _replays(history)


async def test_a_declared_release_a_worker_did_not_know_replays_by_the_marker_it_recorded(
    temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starter deployed before the workers declares a release an older worker does not know:
    that worker records its own newest marker, and a worker that knows the release replays the
    run by that marker, not by the input."""
    older = versions.RELEASES[:-1]
    store = StubStore(free_stock=0)
    with monkeypatch.context() as patch:
        known = versions.GATHERED[1:]  # newest first: every release but this code's newest
        patch.setattr(versions, "GATHERED", known)
        patch.setattr(versions, "TAKES", dict(known))
        # Outside the sandbox, which would import its own, unpatched copy of `versions`.
        task_queue = f"older-worker-{new_id('q')}"
        async with Worker(
            temporal_env.client,
            task_queue=task_queue,
            workflows=[BackorderLineWorkflow],
            activities=store.activities(),
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            line = LineHarness(temporal_env.client, task_queue, store)
            handle = await line.start(line_request(new_id("wf")), release=versions.NEWEST)
            await status_when(handle, lambda status: status.state is LineState.WAITING)
            history = await _once_waiting(handle)
    assert _patch_markers(history) == [older[-1][0]]
    assert await _replays(history)


async def _replays(history: WorkflowHistory) -> bool:
    replayer = Replayer(
        workflows=[BackorderLineWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    return True


async def _once_waiting(handle: WorkflowHandle[Any, Any]) -> WorkflowHistory:
    """The history once its first workflow task completed: the line waits on its timer."""
    for _ in range(200):
        history = await handle.fetch_history()
        if any(event.HasField("timer_started_event_attributes") for event in history.events):
            return history
        await asyncio.sleep(0.05)
    raise AssertionError("the line never started waiting on its timer")
