"""What ops see of a line in Temporal, after each change of its state: the typed search
attributes they filter on, the static summary, the current details (state, next deadline and
what happens then, last message), and the summaries that make the event history read as a story.

Everything is read the way the Temporal UI and CLI read it: `describe()` for search attributes
and the static summary, the built-in `__temporal_workflow_metadata` query for current details,
`fetch_history()` for the user metadata of activity and timer events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionDescription, WorkflowHandle
from temporalio.common import SearchAttributeKey

from domain import contract
from domain.contract.lines import STATUS, line_key
from domain.line.status import LineStatus
from tests.support.factories import backorder, new_id
from tests.support.poll import eventually
from tests.support.stack import Stack

METADATA_QUERY = "__temporal_workflow_metadata"
"""The query the Temporal UI sends to show a workflow's current details."""


@dataclass
class Seen:
    """One consistent look at a line: the status query did not change while it was taken."""

    description: WorkflowExecutionDescription
    details: str
    status: LineStatus

    def attribute(self, key: SearchAttributeKey[Any]) -> Any:
        return self.description.typed_search_attributes.get(key)


async def look(handle: WorkflowHandle[Any, Any]) -> Seen:
    """Describe the line and read its details, retrying if it moved on while we looked."""
    for _ in range(20):
        before = await handle.query(STATUS.name, result_type=LineStatus)
        description = await handle.describe()
        metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
        after = await handle.query(STATUS.name, result_type=LineStatus)
        if before == after:
            return Seen(description, metadata.current_details, after)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never held still long enough to be read")


def assert_matches_line(seen: Seen, *, state: str, receipt: str | None = None) -> None:
    """Search attributes and details agree with the line (its status query) in this state."""
    status = seen.status
    assert status.state.value == state
    assert seen.attribute(contract.SA_STATE) == state
    assert seen.attribute(contract.SA_ORDER_ID) == status.order_id
    assert seen.attribute(contract.SA_SKU) == status.sku
    assert seen.attribute(contract.SA_CHANNEL) == status.channel.value
    assert seen.attribute(contract.SA_CUSTOMER_TIER) == status.customer.tier.value
    assert seen.attribute(contract.SA_SHIP_BY) == status.ship_by
    assert seen.attribute(contract.SA_ESCALATION_LEVEL) == status.escalation_level
    assert seen.attribute(contract.SA_RECEIPT_ID) == receipt

    details = seen.details
    assert details.startswith(f"**{state}**: {status.allocated_quantity} allocated, ")
    if status.next_deadline is not None:
        assert status.next_action is not None
        when = f"{status.next_deadline:%d %b %Y %H:%M} UTC"
        assert f"next: {status.next_action} at {when}" in details
    else:
        assert "next:" not in details
    if status.messages:
        assert details.endswith(f"last message: {status.messages[-1].kind.value}")


LOCAL_ACTIVITY = "core_local_activity"
"""The marker a local activity leaves in the history."""


async def summaries(stack: Stack, handle: WorkflowHandle[Any, Any]) -> dict[str, list[str]]:
    """The summary of every activity (regular or local) and timer in the history, by kind; ''
    where one is missing."""
    found: dict[str, list[str]] = {"activity": [], "timer": []}
    kinds = {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity",
        EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    }
    converter = stack.services.client.data_converter
    for event in (await handle.fetch_history()).events:
        kind = kinds.get(event.event_type)
        marker = event.marker_recorded_event_attributes.marker_name
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and marker == LOCAL_ACTIVITY:
            kind = "activity"  # a local activity: one marker, with the same summary
        if kind is None:
            continue
        summary = ""
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            summary = (await converter.decode([event.user_metadata.summary]))[0]
        found[kind].append(summary)
    return found


async def ok(call: Awaitable[Any]) -> None:
    response = await call
    assert response.status_code in (200, 201), response.text


async def waiting_with_its_first_message(
    stack: Stack, order: str
) -> tuple[WorkflowHandle[Any, Any], Seen]:
    """The line's handle, and a reading once it waits with its first message sent (nothing
    inbound dates these lines: the delay-option notice)."""
    handle = stack.services.client.get_workflow_handle(line_key(order, "1"))
    seen = await eventually(
        lambda: look(handle),
        lambda s: s.attribute(contract.SA_STATE) == "waiting" and bool(s.status.messages),
        what="waiting with its first message sent",
        within=20,
    )
    return handle, seen


async def test_search_attributes_and_details_follow_a_line_from_waiting_to_shipped(
    stack: Stack,
) -> None:
    """waiting -> partially allocated by one receipt -> escalated (the apology rung) ->
    allocated in full by a second receipt -> shipped; what ops see is checked at every step."""
    order, sku = new_id(), new_id("sku")
    first, second = f"r1-{order}", f"r2-{order}"
    await stack.put_sku(sku)
    now = datetime.now(UTC).replace(microsecond=0)
    ship_by = now + timedelta(seconds=10)  # fast policy: the apology fires 1 s before
    body = backorder(
        order,
        sku,
        quantity=3,
        ship_policy="complete",  # held while partly allocated, so that state can be seen
        ordered_at=now,
        ship_by=ship_by,
        customer={"id": f"c-{order}", "email": f"{order}@example.com", "tier": "vip"},
    )
    await ok(stack.fast.post("/v1/backorders", json=body, headers=stack.auth("order")))
    handle, seen = await waiting_with_its_first_message(stack, order)
    # Waiting: everything ops filter on is there from the start.
    assert_matches_line(seen, state="waiting")
    assert seen.attribute(contract.SA_SHIP_BY) == ship_by
    assert seen.attribute(contract.SA_CHANNEL) == "web"
    assert seen.attribute(contract.SA_CUSTOMER_TIER) == "vip"
    # Nothing inbound dates it: the notice went out at its start (the first escalation).
    assert seen.attribute(contract.SA_ESCALATION_LEVEL) == 1
    assert await seen.description.static_summary() == (
        f"3 x {sku} for order {order}, web, ship by {ship_by:%d %b %Y}"
    )
    assert "next: apologise with a goodwill offer at " in seen.details
    assert "last message: delay_notice" in seen.details

    # Partially allocated by a receipt: the line carries the receipt's id.
    await ok(stack.receive(sku, 1, receipt_id=first))
    seen = await eventually(
        lambda: look(handle),
        lambda s: s.attribute(contract.SA_STATE) == "partially_allocated",
        what="partially allocated",
        within=20,
    )
    assert_matches_line(seen, state="partially_allocated", receipt=first)
    assert seen.details.startswith("**partially_allocated**: 1 allocated, 0 shipped of 3")

    # Escalated: the customer agreed to wait (no cancel deadline), so the next deadline is the
    # apology rung; when it fires the escalation level rises to 2.
    await ok(stack.api.post(f"/v1/backorders/{order}/1/wait", headers=stack.auth("order")))
    seen = await eventually(
        lambda: look(handle),
        lambda s: s.status.next_action == "apologise with a goodwill offer",
        what="showing the apology as its next deadline",
        within=20,
    )
    assert_matches_line(seen, state="partially_allocated", receipt=first)
    assert seen.attribute(contract.SA_ESCALATION_LEVEL) == 1
    seen = await eventually(
        lambda: look(handle),
        lambda s: (
            s.attribute(contract.SA_ESCALATION_LEVEL) == 2
            and s.status.messages[-1].kind.value == "apology_offer"
        ),
        what="escalated",
        within=20,
    )
    assert_matches_line(seen, state="partially_allocated", receipt=first)
    assert "last message: apology_offer" in seen.details

    # Allocated in full by a second receipt, then shipped: final, no next deadline.
    await ok(stack.receive(sku, 2, receipt_id=second))
    await asyncio.wait_for(handle.result(), 30)
    seen = await look(handle)
    assert_matches_line(seen, state="shipped", receipt=second)
    assert seen.attribute(contract.SA_ESCALATION_LEVEL) == 2
    assert seen.details.startswith("**shipped**: 3 allocated, 3 shipped of 3")
    assert seen.details.endswith("last message: shipped")

    # The history reads as a story: every activity and every timer says what it is for.
    story = await summaries(stack, handle)
    assert "" not in story["activity"], story
    assert "" not in story["timer"], story
    for step in (
        f"queue 3 x {sku}",  # the store dates the line as it queues it: no ETA recompute
        "message: delay_notice",
        "outreach task for customer service (apology)",
        "message: apology_offer",
        f"ship 3 x {sku}",
        "message: shipped",
    ):
        assert step in story["activity"], story
    assert "apologise with a goodwill offer" in story["timer"], story


async def test_search_attributes_and_details_show_a_cancelled_line(stack: Stack) -> None:
    """A waiting Amazon line (default policy), cancelled by the order system."""
    order, sku = new_id(), new_id("sku")
    await stack.put_sku(sku)
    await ok(stack.start(backorder(order, sku, quantity=2, channel="amazon")))
    handle, seen = await waiting_with_its_first_message(stack, order)
    assert_matches_line(seen, state="waiting")
    assert seen.attribute(contract.SA_CHANNEL) == "amazon"
    assert seen.attribute(contract.SA_CUSTOMER_TIER) == "standard"
    ship_by = seen.status.ship_by
    assert ship_by > datetime.now(UTC)  # the channel's handling time, from ordered-at
    assert await seen.description.static_summary() == (
        f"2 x {sku} for order {order}, amazon, ship by {ship_by:%d %b %Y}"
    )

    await ok(
        stack.api.post(
            f"/v1/backorders/{order}/1/cancel",
            json={"reason": "customer asked"},
            headers=stack.auth("order"),
        )
    )
    await asyncio.wait_for(handle.result(), 30)
    seen = await look(handle)
    assert_matches_line(seen, state="cancelled")
    assert seen.details.endswith("last message: cancelled_refunded")

    story = await summaries(stack, handle)
    assert "" not in story["activity"], story
    for step in (
        f"release {sku} (customer asked)",
        "refund 2 x 19.99",
        "message: cancelled_refunded",
    ):
        assert step in story["activity"], story
