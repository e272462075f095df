"""The money steps of a line with payment terms (`domain.line.payment`): capture what each
shipment carried, renew the hold before it lapses, take another payment method after a
declined renewal, and on a cancel void the hold and refund what was charged beyond what
shipped. Lines paid in full at order (no terms) never come here."""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain import contract
from domain.contract.lines import AUTHORIZE, CAPTURE, REFUND, VOID
from domain.line.effects import RefundInput, RefundRecord
from domain.line.messages import MessageKind
from domain.line.payment import (
    ZERO,
    AuthorizeInput,
    CaptureInput,
    Hold,
    Payment,
    PaymentView,
    VoidInput,
)
from domain.links import LinkAction
from workflows.line.run import LineRun


def _payment(line: LineRun) -> Payment:
    payment = line.book.payment
    assert payment is not None, "only lines with payment terms have payment steps"
    return payment


async def capture_shipment(line: LineRun, sequence: int) -> None:
    """Charge what shipment `sequence` carried, less what was charged already (a deposit)."""
    payment = line.book.payment
    if payment is None:
        return
    due = payment.capture_due(line.book.shipped_value(line.request.unit_price))
    hold = payment.hold
    if due <= ZERO or hold is None:
        return
    captured = await line.call(
        CAPTURE,
        CaptureInput(
            line_key=line.key,
            hold=hold.reference,
            amount=payment.money(due),
            currency=payment.currency,
            shipment=sequence,
        ),
        summary=f"capture {payment.money(due)} {payment.currency} for shipment {sequence}",
    )
    payment.record_capture(sequence, due, captured.capture_id)
    line.show_payment()


async def _void(line: LineRun, hold: Hold, reason: str, *, replaced: bool = False) -> None:
    payment = _payment(line)
    await line.call(
        VOID,
        VoidInput(
            line_key=line.key,
            hold=hold.reference,
            amount=payment.money(hold.available),
            currency=payment.currency,
            number=hold.number,
            reason=reason,
            replaced=replaced,
        ),
        summary=f"void hold {hold.number}: {reason}",
    )
    payment.record_void(hold, replaced=replaced)


async def settle_cancel(line: LineRun, reason: str, unshipped: int) -> RefundRecord | None:
    """A cancel: release the hold (nothing more will be charged) and refund what was charged
    beyond the value of what shipped (a deposit). Both at once, as the law asks."""
    payment = _payment(line)
    hold = payment.hold
    if hold is not None and hold.available > ZERO:
        await _void(line, hold, reason)
    refund: RefundRecord | None = None
    due = payment.refund_due(line.book.shipped_value(line.request.unit_price))
    if due > ZERO:
        refund = await line.call(
            REFUND,
            RefundInput(
                line_key=line.key,
                request=line.request,
                quantity=unshipped,
                reason=reason,
                amount=payment.money(due),
            ),
            summary=f"refund {payment.money(due)} {payment.currency}: {reason}",
        )
        payment.record_refund(due)
        line.book.refunds.append(refund)
    payment.settled = True
    line.show_payment()
    return refund


async def _authorize(line: LineRun, method: str) -> Hold | None:
    """A new hold of what remains to capture on `method`; None when the processor declines."""
    payment = _payment(line)
    amount = payment.outstanding
    expires_at = workflow.now() + line.policy.days(line.policy.payment.hold_days)
    number = payment.next_authorization()
    granted = await line.call(
        AUTHORIZE,
        AuthorizeInput(
            line_key=line.key,
            method=method,
            amount=payment.money(amount),
            currency=payment.currency,
            expires_at=expires_at,
            number=number,
        ),
        summary=f"authorize {payment.money(amount)} {payment.currency} (hold {number})",
    )
    if granted.declined:
        payment.record_decline(workflow.now())
        line.show_payment()
        return None
    old = payment.hold
    payment.method = method
    new = payment.record_renewal(granted.reference, amount, workflow.now(), granted.expires_at)
    if old is not None:
        await _void(line, old, f"replaced by hold {new.number}", replaced=True)
    line.show_payment()
    return new


async def renew(line: LineRun) -> None:
    """The hold lapses soon: hold what remains again (merchant-initiated), release the old
    one; if the processor declines, ask the customer for another payment method."""
    payment = _payment(line)
    if await _authorize(line, payment.method) is not None:
        return
    assert payment.needs_method_since is not None
    answer_by = payment.needs_method_since + line.policy.days(line.policy.payment.update_grace_days)
    await line.send(
        MessageKind.PAYMENT_UPDATE_REQUEST,
        f"payment-update:{payment.declines}",
        deadline=answer_by,
        links=[
            line.link(LinkAction.UPDATE_PAYMENT, expires_at=answer_by),
            line.link(LinkAction.CANCEL),
        ],
    )


async def new_method(line: LineRun, reference: str) -> PaymentView:
    """Another payment method from the customer: hold what remains on it."""
    if await _authorize(line, reference) is None:
        raise ApplicationError(
            "Your payment method was declined. Please try another one.",
            type=contract.ERROR_PAYMENT_DECLINED,
        )
    return PaymentView.of(_payment(line))


def discount(line: LineRun, amount: Decimal) -> Decimal:
    """Take `amount` off what the line will charge; returns what must be refunded instead,
    having already been charged."""
    payment = line.book.payment
    if payment is None:
        return amount
    refund_now = payment.give_discount(amount)
    line.show_payment()
    return refund_now
