"""A line that waits through many ETA changes continues as new before its history passes the
policy's bound, and its next run has everything: offers and their status, consent, messages
sent (none sent again), and the stock it goes on to ship.

Its own stack and store (SQLite: continue-as-new is Temporal's business, not the store's), with
a policy whose bound is small enough to pass in a test: `history_events_limit` 60.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from domain import contract
from domain.contract.lines import line_key
from tests.support.factories import apology_policy, backorder, new_id
from tests.support.stack import Stack, running_stack

LIMIT = 60
SLACK = 30
"""Events one turn of the line's loop may add after the check (a message and its tasks)."""
ETA_CHANGES = 12

POLICY = apology_policy(offer_after=2, ship_in=10, history_events_limit=LIMIT)


@pytest.fixture(scope="module")
async def stack(temporal_env: WorkflowEnvironment) -> AsyncIterator[Stack]:
    async with running_stack("sqlite", temporal_env, fast_policy=POLICY) as running:
        yield running


def _told_times(count: int) -> Callable[[dict[str, Any]], bool]:
    def told(line: dict[str, Any]) -> bool:
        return sum(1 for message in line["messages"] if message["kind"] == "eta_update") >= count

    return told


async def _runs(stack: Stack, workflow_id: str) -> list[Any]:
    query = f'WorkflowId = "{workflow_id}"'
    return [run async for run in stack.services.client.list_workflows(query)]


async def test_a_long_wait_continues_as_new_and_forgets_nothing(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, 0)
    now = datetime.now(UTC)
    body = backorder(order, sku, ordered_at=now, ship_by=now + timedelta(seconds=10))
    response = await stack.fast.post("/v1/backorders", json=body, headers=stack.auth("order"))
    assert response.status_code == 201, response.text

    offered = await stack.wait_line(order, lambda line: bool(line["offers"]), within=30)
    offer_id = offered["offers"][0]["offer_id"]
    accepted = await stack.api.post(
        f"/v1/backorders/{order}/1/offers/{offer_id}/accept", headers=stack.auth("ops")
    )
    assert accepted.status_code == 200, accepted.text

    workflow_id = line_key(order, "1")
    for change in range(ETA_CHANGES):
        eta = now + timedelta(days=30 + change)
        answer = await stack.api.post(
            f"/v1/backorders/{order}/1/eta",
            json={"eta": eta.isoformat()},
            headers=stack.auth("ops"),
        )
        assert answer.status_code == 200, answer.text
        await stack.wait_line(order, _told_times(change + 1))
    runs = await _runs(stack, workflow_id)
    assert len(runs) >= 2, "the line never continued as new"

    # Every run but the newest stayed within the bound.
    client = stack.services.client
    for run in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        assert len(history.events) <= LIMIT + SLACK, (run.run_id, len(history.events))
        if run.run_id != runs[0].run_id:
            last = history.events[-1].event_type
            assert last == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW

    # Search attributes carry over; the summary does not, so the details start with it.
    newest = client.get_workflow_handle(workflow_id)
    described = await newest.describe()
    assert described.typed_search_attributes.get(contract.SA_ORDER_ID) == order
    # The notice at its start (nothing inbound dates it) and the apology rung.
    assert described.typed_search_attributes.get(contract.SA_ESCALATION_LEVEL) == 2
    metadata = await newest.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith(f"1 x {sku} for order {order}, web, ship by ")
    assert f"(run {len(runs)}: continued as new)" in metadata.current_details
    # The newest run remembers the offer, the consent and the ETA.
    line = await stack.line(order)
    assert [offer["status"] for offer in line["offers"]] == ["accepted"]
    assert line["consent"] == "explicit"
    assert datetime.fromisoformat(line["eta"]) == now + timedelta(days=30 + ETA_CHANGES - 1)
    assert line["escalation_level"] >= 2

    # The stock arrives after all that: shipped once, and every message went out once.
    assert (await stack.receive(sku, 1)).status_code == 201
    final = await stack.finished(order, within=60)
    assert final["state"] == "shipped" and len(final["shipments"]) == 1
    sent = await stack.requests("notifications", line_key(order, "1"))
    keys = Counter(row["idempotency_key"] for row in sent)
    assert [key for key, count in keys.items() if count > 1] == []
    kinds = Counter(row["body"]["kind"] for row in sent)
    assert kinds == {
        "delay_notice": 1,
        "apology_offer": 1,
        "offer_accepted": 1,
        "eta_update": ETA_CHANGES,
        "shipped": 1,
    }
    assert len(await stack.requests("carrier", line_key(order, "1"))) == 1
    stack.assert_rules(sku)


async def test_a_short_line_never_continues_as_new(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, 1)
    assert (await stack.start(backorder(order, sku))).status_code == 201
    await stack.finished(order)
    assert len(await _runs(stack, line_key(order, "1"))) == 1
