"""The life of a line: queued and confirmed, shipped as its stock comes, cancelled and refunded,
and the deadlines of its promises (delay notices, the marketplace's choice and auto-cancel).

Each step is a function of the run (`LineRun`); the rules they follow are the book's
(`domain.line.book`) and the timeline's (`domain.line.timeline`).
"""

from __future__ import annotations

from temporalio import workflow

from domain import contract
from domain.contract.lines import (
    CANCEL_MARKETPLACE_DEADLINE,
    CANCEL_NO_CONSENT,
    CANCEL_NO_PAYMENT,
    CREATE_SHIPMENT,
    RECORD_LINE,
    REFUND,
    RELEASE_LINE,
)
from domain.line.effects import (
    CancelRequest,
    CancelResult,
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ShipmentInput,
)
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.line.timeline import MESSAGES, Step, StepKind
from domain.links import LinkAction
from workflows.etas import refresh_etas
from workflows.line import choices, moment, order, payment
from workflows.line.run import LineRun


async def begin(line: LineRun) -> None:
    """The first run: record the line in the queue, join its order, confirm to the customer."""
    recorded = await record(line)
    if line.book.with_order:
        await order.join(line)
    request = line.request
    # Local-first runs decide from the recorded result alone: a retried workflow task may
    # bring an allocation signal the lost attempt did not see, and must still send (and so
    # record) the confirmation that attempt may already have sent.
    short = recorded.allocated_quantity if line.local else line.book.held + line.book.shipped
    if short >= request.quantity:
        return
    # Where the line stands in the queue against inbound supply: its first ETA.
    if line.local:
        # The store dated the line as it queued it; only lines it went ahead of (an earlier
        # ship-by) need their ETAs recomputed and their customers told.
        line.book.timeline.set_eta(recorded.eta)
        if recorded.lines_behind:
            await refresh_etas(request.sku)
    else:
        line.book.timeline.set_eta(await refresh_etas(request.sku, for_line=line.key))
    if workflow.patched(moment.PATCH):
        await moment.first(line)
        return
    # The link's validity counts from the line's start, not from now: the message then reads
    # the same if a lost workflow task sends it again (see `LineRun.send`).
    valid_until = workflow.info().start_time + line.policy.days(90)
    await line.send(
        MessageKind.BACKORDER_CONFIRMATION,
        "confirmation",
        links=[line.link(LinkAction.CANCEL, expires_at=valid_until)],
        stable=True,
    )


async def record(line: LineRun) -> RecordLineResult:
    """Queue the line in the store; it takes what free stock there is at once."""
    recorded = await line.call(
        RECORD_LINE,
        line.line,
        summary=f"queue {line.request.quantity} x {line.request.sku}",
    )
    others = []
    for notice in recorded.allocations:
        if notice.line_key == line.key:
            line.book.take(notice)
        else:
            others.append(notice)
    if others:
        await line.signal_others(others)
    # Non-zero only when the line was recorded by an earlier run of this workflow id.
    line.book.shipped = recorded.shipped_quantity
    if recorded.state is LineState.CANCELLED:
        line.set_state(LineState.CANCELLED)
    else:
        line.refresh_state()
    return recorded


async def act(line: LineRun) -> None:
    """Do what the book says is due now: a cancel, the order told it is whole, a shipment."""
    async with line.lock:
        book = line.book
        if book.cancel_request is not None and not book.state.is_final:
            await cancel(line, book.cancel_request)
        elif book.order_ready_due():
            await order.report_ready(line)
        elif book.shippable() > 0:
            await ship(line, book.shippable())


async def ship(line: LineRun, quantity: int) -> None:
    book = line.book
    sequence = book.next_shipment()
    shipment = await line.call(
        CREATE_SHIPMENT,
        ShipmentInput(
            line_key=line.key,
            request=line.request,
            sequence=sequence,
            quantity=quantity,
            expedited=book.expedited,
            order_shipment=book.order_shipment,
        ),
        summary=f"ship {quantity} x {line.request.sku}",
    )
    done = book.record_shipment(shipment)
    line.refresh_state()
    await payment.capture_shipment(line, sequence)
    await line.send(
        MessageKind.SHIPPED if done else MessageKind.PARTIALLY_SHIPPED,
        f"shipment:{sequence}",
        shipment=shipment,
        quantity=book.shipped,
        links=[] if done else [line.link(LinkAction.CANCEL)],
    )


async def cancel(line: LineRun, request: CancelRequest) -> None:
    """Release what the line holds to the next lines, give back the money for what did not
    ship, tell the customer."""
    book = line.book
    if book.with_order and not await order.withdraw(line):
        # The order's shipment already took this line's units: it ships instead.
        book.cancel_request = None
        return
    released = await line.call(
        RELEASE_LINE,
        ReleaseInput(
            line_key=line.key,
            sku=line.request.sku,
            reason=request.reason,
            requested_by=request.requested_by,
        ),
        summary=f"release {line.request.sku} ({request.reason})",
    )
    book.record_release(released)
    line.set_state(LineState.CANCELLED)
    if released.reallocated:
        await line.signal_others(released.reallocated)
    await refresh_etas(line.request.sku)  # the lines behind it move up
    charged: str | None = None
    if book.payment is not None:
        refund = await payment.settle_cancel(line, request.reason, released.refund_quantity)
        charged = book.payment.money(book.payment.kept)
    else:
        refund = await _refund_prepaid(line, request.reason, released.refund_quantity)
    await line.send(
        MessageKind.CANCELLED_REFUNDED,
        "cancelled",
        refund_amount=refund.amount if refund else "0",
        charged=charged,
        detail=f"Why: {request.reason}." if request.requested_by == "policy" else None,
    )
    book.cancel_result = CancelResult(
        state=LineState.CANCELLED, released_quantity=released.released_quantity, refund=refund
    )


async def _refund_prepaid(line: LineRun, reason: str, unshipped: int) -> RefundRecord | None:
    """A line paid in full at order: refund every unit that did not ship, less goodwill
    refunds already paid."""
    owed = line.book.refund_owed(line.request.unit_price, unshipped)
    if unshipped <= 0 or owed <= 0:
        return None
    refund = await line.call(
        REFUND,
        RefundInput(
            line_key=line.key,
            request=line.request,
            quantity=unshipped,
            reason=reason,
            amount=f"{owed:.2f}",
        ),
        summary=f"refund {unshipped} x {line.request.unit_price}",
    )
    line.book.refunds.append(refund)
    return refund


async def take_step(line: LineRun, step: Step) -> None:
    """Carry out one deadline of the timeline; each is recorded so it happens once."""
    timeline = line.book.timeline
    patched = step.kind in MESSAGES and workflow.patched(moment.PATCH)
    if patched:
        step = moment.overtaken(line, step)
    if patched and step.kind in MESSAGES:
        await moment.take(line, step)
    elif step.kind is StepKind.ETA_UPDATE:
        pass  # the quiet period is over: the run's loop tells the new date
    elif step.kind is StepKind.DELAY_NOTICE:
        facts = timeline.record_notice(workflow.now(), line.policy)
        substitutes, links = await choices.substitute_choices(line)
        links.append(line.link(LinkAction.CANCEL))
        if not facts.silence_is_consent:
            links.append(line.link(LinkAction.WAIT, expires_at=facts.answer_by))
        await line.send(
            MessageKind.DELAY_NOTICE,
            f"notice:{timeline.notices}",
            notice=facts,
            substitutes=substitutes,
            links=links,
        )
    elif step.kind is StepKind.OFFER:
        assert step.rung is not None
        await choices.offer(line, step.rung)
    elif step.kind is StepKind.CHOICE_REQUEST:
        timeline.record_choice_request()
        substitutes, links = await choices.substitute_choices(line)
        await line.send(
            MessageKind.CHOICE_REQUEST,
            "choice",
            substitutes=substitutes,
            links=[*links, line.link(LinkAction.WAIT), line.link(LinkAction.CANCEL)],
            deadline=line.policy.auto_cancel_at(line.line.ship_by),
        )
    elif step.kind is StepKind.RENEW_HOLD:
        async with line.lock:
            await payment.renew(line)
    else:
        reason = {
            StepKind.CANCEL_NO_CONSENT: CANCEL_NO_CONSENT,
            StepKind.CANCEL_MARKETPLACE: CANCEL_MARKETPLACE_DEADLINE,
            StepKind.CANCEL_NO_PAYMENT: CANCEL_NO_PAYMENT,
        }[step.kind]
        # The only place a line is cancelled by the policy: its own deadline.
        line.book.cancel_request = CancelRequest(reason=reason, requested_by="policy")
        async with line.lock:
            await cancel(line, line.book.cancel_request)
    workflow.upsert_search_attributes(
        [contract.SA_ESCALATION_LEVEL.value_set(timeline.escalation_level)]
    )


def history_full(line: LineRun) -> bool:
    """The history passed the policy's bound, or Temporal suggests a new run. Behind a patch:
    runs of earlier code never continue as new on replay."""
    info = workflow.info()
    full = (
        info.get_current_history_length() >= line.policy.history_events_limit
        or info.is_continue_as_new_suggested()
    )
    return full and workflow.patched("continue-as-new-long-waits")


def continue_as_new(line: LineRun) -> None:
    """Hand the book to a new run (raises, ending this one)."""
    workflow.continue_as_new(line.line.model_copy(update={"carried": line.book.carried()}))
