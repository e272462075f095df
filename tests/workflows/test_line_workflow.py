"""The line's workflow on its own, over stub activities: its steps in the order the rules say,
and what it does with payloads it cannot use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain import contract
from domain.contract.lines import ACCEPT_OFFER, ALLOCATED, CANCEL, ETA_CHANGED
from domain.line.choices import AcceptOffer
from domain.line.effects import CancelRequest, CancelResult
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.policy import ServicePolicy
from tests.workflows.stubs import (
    StubStore,
    current_details,
    history_events,
    line_request,
    line_status,
    line_worker,
    status_when,
)


def order_id() -> str:
    return f"wf-{uuid.uuid4().hex[:10]}"


async def test_a_line_with_free_stock_ships_at_once_without_a_backorder_notice(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client, StubStore(free_stock=5)) as line:
        handle = await line.start(line_request(order_id(), quantity=2))
        status = await handle.result()
    assert (status.state, status.shipped_quantity) == (LineState.SHIPPED, 2)
    assert line.store.kinds() == [MessageKind.SHIPPED]
    assert [s.quantity for s in line.store.shipments] == [2]


async def test_a_waiting_line_is_confirmed_then_ships_each_part_as_it_is_allocated(
    temporal_env: WorkflowEnvironment,
) -> None:
    eta = datetime.now(UTC) + timedelta(seconds=20)  # before ship-by, 30 policy seconds away
    async with line_worker(temporal_env.client, StubStore(eta=eta)) as line:
        request = line_request(order_id(), quantity=3)
        handle = await line.start(request)
        await status_when(handle, lambda s: s.state is LineState.WAITING and bool(s.messages))
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await handle.result()
    assert status.state is LineState.SHIPPED
    assert status.eta == eta
    assert line.store.kinds() == [
        MessageKind.BACKORDER_CONFIRMATION,
        MessageKind.PARTIALLY_SHIPPED,
        MessageKind.SHIPPED,
    ]
    assert [(s.sequence, s.quantity) for s in line.store.shipments] == [(1, 1), (2, 2)]


async def test_an_allocation_signalled_twice_ships_once(temporal_env: WorkflowEnvironment) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id(), quantity=2))
        notice = line.store.allocation(handle.id, 2)
        await handle.signal(ALLOCATED.name, notice)
        await handle.signal(ALLOCATED.name, notice)
        status = await handle.result()
    assert status.shipped_quantity == 2
    assert len(line.store.shipments) == 1


async def test_a_cancel_releases_refunds_what_did_not_ship_and_records_who_asked(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id(), quantity=3))
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        result = await handle.execute_update(
            CANCEL.name,
            CancelRequest(reason="changed my mind", requested_by="customer"),
            result_type=CancelResult,
        )
        status = await handle.result()
    assert result.refund is not None and result.refund.amount == "20.00"
    assert status.state is LineState.CANCELLED
    assert (status.cancelled_by, line.store.released[0].requested_by) == ("customer", "customer")
    assert line.store.kinds()[-1] is MessageKind.CANCELLED_REFUNDED


@pytest.mark.parametrize("role", ["policy", "", "admin"])
async def test_a_cancel_in_the_name_of_the_policy_or_an_unknown_role_is_refused(
    temporal_env: WorkflowEnvironment, role: str
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id()))
        await status_when(handle, lambda s: s.state is LineState.WAITING)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                CANCEL.name, CancelRequest(reason="forged", requested_by=role)
            )
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == contract.ERROR_INVALID_REQUEST
        status = await line_status(handle)
        assert (status.state, status.cancel_reason) == (LineState.WAITING, None)
        assert line.store.calls["release_line"] == 0


async def test_without_consent_the_policy_cancels_at_its_deadline_in_its_own_name(
    temporal_env: WorkflowEnvironment,
) -> None:
    """No supply (no ETA): the delay notice that cannot give a date as the line's first message,
    then the cancel at the deadline, recorded as the policy's."""
    policy = ServicePolicy.model_validate(
        {
            "day_seconds": 1,
            "delay": {"notice_lead_days": 1},
            "channels": {"web": {"handling_days": 2, "ladder": []}},
        }
    )
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id()), policy=policy, ship_in=timedelta(seconds=2)
        )
        status = await handle.result()
    assert status.state is LineState.CANCELLED
    assert (status.cancel_reason, status.cancelled_by) == (
        "delayed without the customer's consent",
        "policy",
    )
    assert line.store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.CANCELLED_REFUNDED]
    [notice, _] = line.store.messages
    assert notice.first and notice.notice is not None and notice.notice.revised is None
    assert line.store.released[0].requested_by == "policy"


BAD_SIGNALS: list[tuple[str, Any]] = [
    (ETA_CHANGED.name, {"eta": "2026-12-10T00:00:00"}),
    (ETA_CHANGED.name, {"eta": "0001-01-01T00:00:00Z"}),
    (ETA_CHANGED.name, {"eta": 5}),
    (ETA_CHANGED.name, {"eta": None, "extra": 1}),
    (ETA_CHANGED.name, "not an object"),
    (ALLOCATED.name, {"allocation_id": "x"}),
    (
        ALLOCATED.name,
        {
            "allocation_id": 9,
            "line_key": "backorder:other:1",
            "order_id": "other",
            "line_id": "1",
            "quantity": 1,
            "source": "receipt:a:b",
        },
    ),
]


async def test_signals_a_line_cannot_use_are_dropped_shown_and_change_nothing(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id(), quantity=2))
        await status_when(handle, lambda s: bool(s.messages))
        for name, payload in BAD_SIGNALS:
            await handle.signal(name, payload)
        described = await status_when(handle, lambda s: s.eta is None)
        assert described.allocated_quantity == 0
        details = await current_details(handle)
        assert details.count("eta_changed: ") + details.count("allocated: ") == 5  # the last five
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await handle.result()
    assert status.state is LineState.SHIPPED
    assert line.store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.SHIPPED]
    events = await history_events(handle)
    assert events["workflow_task_failed_event_attributes"] == 0


async def test_an_offer_update_with_an_unknown_offer_is_refused_by_its_validator(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id()))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ACCEPT_OFFER.name, AcceptOffer(offer_id="nope-1"))
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == contract.ERROR_OFFER_UNKNOWN
        events = await history_events(handle)
    # A rejected Update leaves nothing in the history.
    assert events["workflow_execution_update_accepted_event_attributes"] == 0


async def test_a_long_wait_continues_as_new_and_keeps_its_book(
    temporal_env: WorkflowEnvironment,
) -> None:
    policy = ServicePolicy.model_validate(
        {
            "day_seconds": 1,
            "history_events_limit": 50,
            "channels": {"web": {"handling_days": 60, "ladder": []}},
        }
    )
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=3), policy=policy, ship_in=timedelta(hours=1)
        )
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        latest = temporal_env.client.get_workflow_handle(handle.id, result_type=LineStatus)
        """The newest run of the line, whichever it is."""
        base = datetime.now(UTC) + timedelta(days=10)
        for day in range(12):
            told = len(line.store.messages)
            await latest.signal(ETA_CHANGED.name, {"eta": (base + timedelta(days=day)).isoformat()})
            await status_when(latest, lambda s, told=told: len(s.messages) > told)  # type: ignore[misc]
        await latest.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await latest.result()
        last_run = await latest.describe()
    assert last_run.run_id != handle.first_execution_run_id
    assert status.state is LineState.SHIPPED
    assert [s.quantity for s in line.store.shipments] == [1, 2]
    kinds = line.store.kinds()
    assert kinds.count(MessageKind.DELAY_NOTICE) == 1  # at its start: nothing inbound
    assert kinds.count(MessageKind.BACKORDER_CONFIRMATION) == 0
    assert kinds.count(MessageKind.ETA_UPDATE) == 12
