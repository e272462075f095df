"""The money of a line on its own, over stub activities: captures follow shipments, a cancel
voids and refunds exactly what it must, holds are renewed before they lapse, and a declined
renewal asks for another payment method or ends with nothing charged."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain import contract
from domain.contract.lines import ALLOCATED, CANCEL, UPDATE_PAYMENT
from domain.line.effects import CancelRequest, CancelResult
from domain.line.messages import MessageKind
from domain.line.payment import NewPaymentMethod, Payment, PaymentState, PaymentView, open_payment
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.policy import ServicePolicy
from tests.workflows.stubs import line_request, line_worker, status_when

PRICE = Decimal("10.00")


def order_id() -> str:
    return f"pay-{uuid.uuid4().hex[:10]}"


def terms(
    quantity: int, *, captured: str = "0", method: str = "card-1", hold: float = 3600
) -> Payment:
    now = datetime.now(UTC)
    return open_payment(
        method=method,
        currency="USD",
        places=2,
        amount=PRICE * quantity,
        captured=Decimal(captured),
        authorized_at=now,
        expires_at=now + timedelta(seconds=hold),
    )


def money(status: LineStatus) -> tuple[str, str, str, str]:
    assert status.payment is not None
    view = status.payment
    return view.captured, view.voided, view.refunded, view.state.value


async def test_each_shipment_captures_what_it_carried(temporal_env: WorkflowEnvironment) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id(), quantity=3), payment=terms(3))
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await handle.result()
    assert [(c.shipment, c.amount) for c in line.store.captures] == [(1, "10.00"), (2, "20.00")]
    assert money(status) == ("30.00", "0.00", "0.00", "captured")
    assert line.store.voids == [] and line.store.refunds == []


async def test_a_deposit_is_counted_before_shipments_capture(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=3), payment=terms(3, captured="15.00")
        )
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await handle.result()
    # The deposit covers the first unit and half the second: 15 more at the second shipment.
    assert [(c.shipment, c.amount) for c in line.store.captures] == [(2, "15.00")]
    assert money(status) == ("30.00", "0.00", "0.00", "captured")


async def test_cancelling_an_authorized_line_voids_the_hold_and_charges_nothing(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id(), quantity=2), payment=terms(2))
        await status_when(handle, lambda s: s.state is LineState.WAITING)
        result = await handle.execute_update(
            CANCEL.name,
            CancelRequest(reason="changed my mind", requested_by="customer"),
            result_type=CancelResult,
        )
        status = await handle.result()
    assert result.refund is None
    assert [(v.number, v.amount) for v in line.store.voids] == [(1, "20.00")]
    assert line.store.refunds == [] and line.store.captures == []
    assert money(status) == ("0.00", "20.00", "0.00", "voided")
    cancelled = [m for m in line.store.messages if m.kind is MessageKind.CANCELLED_REFUNDED]
    assert (cancelled[0].refund_amount, cancelled[0].charged) == ("0", "0.00")


async def test_a_cancel_after_a_part_shipped_refunds_only_the_deposit_beyond_it(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Deposit 25 on 4 x 10; one unit ships (no capture: the deposit covers it); the cancel
    voids the hold of 15 and refunds 15 of the deposit: the customer paid 10 for one unit."""
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=4), payment=terms(4, captured="25.00")
        )
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        await status_when(handle, lambda s: s.shipped_quantity == 1)
        await handle.execute_update(
            CANCEL.name, CancelRequest(reason="too slow", requested_by="order_system")
        )
        status = await handle.result()
    assert line.store.captures == []
    assert [(v.number, v.amount) for v in line.store.voids] == [(1, "15.00")]
    assert [r.amount for r in line.store.refunds] == ["15.00"]
    assert money(status) == ("25.00", "15.00", "15.00", "refunded")


def renewing_policy(**payment: float) -> ServicePolicy:
    return ServicePolicy.model_validate(
        {
            "day_seconds": 1,
            "history_events_limit": 60,
            "payment": {"hold_days": 3, "reauthorize_lead_days": 1, **payment},
            "channels": {"web": {"handling_days": 60, "ladder": []}},
        }
    )


async def test_holds_are_renewed_before_they_lapse_one_after_another(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Holds of 3 s renewed 1 s before they lapse: within ~8 s at least three renewals, each
    voiding the hold it replaced, the line continuing as new on the way; then it ships and the
    capture goes to the newest hold."""
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=2),
            payment=terms(2, hold=3),
            policy=renewing_policy(),
            ship_in=timedelta(hours=1),
        )
        latest = temporal_env.client.get_workflow_handle(handle.id, result_type=LineStatus)
        await status_when(latest, lambda s: len(line.store.authorizations) >= 3, within=20)
        await latest.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        status = await latest.result()
    renewals = line.store.authorizations
    assert [a.amount for a in renewals] == ["20.00"] * len(renewals)
    assert [v.number for v in line.store.voids] == list(range(1, len(renewals) + 1))
    assert line.store.captures[-1].hold == f"auth-{len(renewals)}"
    assert money(status) == ("20.00", "0.00", "0.00", "captured")
    for earlier, later in itertools.pairwise(renewals):
        assert later.expires_at > earlier.expires_at


async def test_a_declined_renewal_asks_for_a_new_method_which_then_pays(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=1),
            payment=terms(1, method="card-decline-me", hold=2),
            policy=renewing_policy(update_grace_days=20),
            ship_in=timedelta(hours=1),
        )
        asking = await status_when(
            handle,
            lambda s: MessageKind.PAYMENT_UPDATE_REQUEST in [m.kind for m in s.messages],
        )
        assert asking.payment is not None
        assert asking.payment.state is PaymentState.NEEDS_NEW_METHOD
        with pytest.raises(WorkflowUpdateFailedError) as declined:
            await handle.execute_update(
                UPDATE_PAYMENT.name, NewPaymentMethod(reference="another-decline")
            )
        assert isinstance(declined.value.cause, ApplicationError)
        assert declined.value.cause.type == contract.ERROR_PAYMENT_DECLINED
        view = await handle.execute_update(
            UPDATE_PAYMENT.name, NewPaymentMethod(reference="card-2"), result_type=PaymentView
        )
        assert view.state is PaymentState.AUTHORIZED
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 1))
        status = await handle.result()
    assert [a.method for a in line.store.authorizations] == [
        "card-decline-me",
        "another-decline",
        "card-2",
    ]
    assert [(c.hold, c.amount) for c in line.store.captures] == [("auth-3", "10.00")]
    # The hold that lapsed unrenewed is released once the new one is in place.
    assert [v.number for v in line.store.voids] == [1]
    assert money(status) == ("10.00", "0.00", "0.00", "captured")


async def test_without_a_new_method_the_line_is_cancelled_with_nothing_charged(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(
            line_request(order_id(), quantity=1),
            payment=terms(1, method="card-decline-me", hold=2),
            policy=renewing_policy(update_grace_days=2),
            ship_in=timedelta(hours=1),
        )
        status = await handle.result()
    assert status.state is LineState.CANCELLED
    assert (status.cancel_reason, status.cancelled_by) == (
        "no valid payment method after a declined renewal",
        "policy",
    )
    assert line.store.captures == [] and line.store.refunds == []
    assert money(status) == ("0.00", "10.00", "0.00", "voided")
