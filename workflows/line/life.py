"""The life of a line: queued and confirmed, shipped as its stock comes, cancelled and refunded,
and the deadlines of its promises (delay notices, the marketplace's choice and auto-cancel).

Each step is a function of the run (`LineRun`); the rules they follow are the book's
(`domain.line.book`) and the timeline's (`domain.line.timeline`).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from domain.contract.lines import (
    CANCEL_MARKETPLACE_DEADLINE,
    CANCEL_NO_CONSENT,
    CANCEL_NO_PAYMENT,
    CREATE_SHIPMENT,
    RECORD_LINE,
    REFUND,
    RELEASE_LINE,
    START_SURVEY,
)
from domain.line.effects import (
    CancelRequest,
    CancelResult,
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ShipmentInput,
    ShipmentRecord,
)
from domain.line.messages import MessageKind, SurveyInput
from domain.line.state import LineState
from domain.line.timeline import MESSAGES, Step, StepKind
from domain.links import LinkAction
from domain.values import ShipPolicy
from workflows.etas import refresh_etas
from workflows.line import choices, moment, order, payment, versions
from workflows.line.run import ETA_PATCH, LineRun

SURVEY_PATCH = "survey-after-shipping"
"""Lines that ended before this code replay without starting their survey."""

SURVEYS_IN_STORE_PATCH = "surveys-in-store"
"""A line's last shipment message leaves its survey due in the store, for the survey sweep;
lines that shipped before this code replay starting a survey workflow of their own."""

QUEUE_LOCALLY_PATCH = "queue-line-locally"
"""A line queues itself with a local activity, in its first workflow task; lines that began
before this code replay it as a regular activity."""

SHIP_LOCALLY_PATCH = "ship-locally"
"""A line books its shipment with a local activity, in the workflow task that got its stock;
lines that shipped before this code replay it as a regular activity."""

ONE_STEP_PATCH = "complete-line-ships-every-origin-at-once"
"""A `complete` line ships all its origins in one step (`_ship_whole`); lines that shipped
before this code replay one shipment per step, with a message each."""


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
    if short >= request.quantity and line.book.hold_until is None:
        return  # it ships now; a preorder whose stock waits for its release is confirmed
    # Where the line stands in the queue against inbound supply: its first ETA.
    if line.local:
        # The store dated the line as it queued it; only lines it went ahead of (an earlier
        # ship-by) need their ETAs recomputed and their customers told.
        line.book.timeline.set_eta(recorded.eta)
        if recorded.lines_behind:
            await refresh_etas(request.sku)
    else:
        line.book.timeline.set_eta(await refresh_etas(request.sku, for_line=line.key))
    if versions.patched(moment.PATCH):
        await moment.first(line, beyond_supply=_beyond_supply(line))
        return
    if _beyond_supply(line) and versions.patched("over-limit-notice"):
        # The first message of a line sold beyond what supply covers: the law's delay-option
        # notice, at once, in place of a confirmation promising a date it has no basis for.
        await announce_delay(line)
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


def _beyond_supply(line: LineRun) -> bool:
    """Sold beyond the backorder limit, and no inbound supply dates it within its promise (a
    preorder's release date is no such basis: it says when the product is out, not that
    units will be there for this line)."""
    eta = line.book.timeline.eta
    preorder = line.line.preorder is not None
    return line.line.over_limit and (eta is None or eta > line.line.ship_by or preorder)


async def record(line: LineRun) -> RecordLineResult:
    """Queue the line in the store; it takes what free stock there is at once."""
    recorded = await line.call(
        RECORD_LINE,
        line.line,
        summary=f"queue {line.request.quantity} x {line.request.sku}",
        local=versions.patched(QUEUE_LOCALLY_PATCH),
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
    if book.ship_policy is ShipPolicy.COMPLETE and versions.patched(ONE_STEP_PATCH):
        await _ship_whole(line)
        return
    sequence = book.next_shipment()
    shipment = await _book_shipment(line, sequence, quantity)
    done = book.record_shipment(shipment)
    line.refresh_state()
    await payment.capture_shipment(line, sequence)
    await line.send(
        MessageKind.SHIPPED if done else MessageKind.PARTIALLY_SHIPPED,
        f"shipment:{sequence}",
        shipment=shipment,
        quantity=book.shipped,
        links=[] if done else [line.link(LinkAction.CANCEL)],
        survey_at=_survey_at(line) if done else None,
    )


async def _book_shipment(line: LineRun, sequence: int, quantity: int) -> ShipmentRecord:
    """Ask the carrier for shipment `sequence` of the line: up to `quantity` units, from one
    origin the store chooses (`store.locations.plan_shipment`)."""
    book = line.book
    return await line.call(
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
        local=versions.patched(SHIP_LOCALLY_PATCH),
    )


async def _ship_whole(line: LineRun) -> None:
    """A line that does not allow partial shipment (alone, or in its ship-complete order) ships
    everything it holds in this one step, under the line's lock (`act`), so that no cancel
    takes effect between its bookings: one shipment per origin its units are at (the store
    plans one origin per shipment, `store.locations.plan_shipment`), one capture, and one
    "shipped" message naming them all. Never a "partially shipped" message whose cancel link
    would cancel half of a complete line (or that its order would refuse)."""
    book = line.book
    shipments = []
    while book.held > 0:
        shipment = await _book_shipment(line, book.next_shipment(), book.held)
        shipments.append(shipment)
        done = book.record_shipment(shipment)
        if done or shipment.quantity <= 0:
            break
    line.refresh_state()
    if not shipments:
        return
    last = shipments[-1].sequence
    await payment.capture_shipment(line, last)
    # The first shipment stands for all: their units in all, each one's tracking in `parts`.
    whole = shipments[0].model_copy(
        update={
            "quantity": sum(shipment.quantity for shipment in shipments),
            "parts": shipments if len(shipments) > 1 else [],
        }
    )
    done = book.shipped >= book.quantity
    await line.send(
        MessageKind.SHIPPED if done else MessageKind.PARTIALLY_SHIPPED,
        f"shipment:{last}",
        shipment=whole,
        quantity=book.shipped,
        links=[] if done or book.with_order else [line.link(LinkAction.CANCEL)],
        survey_at=_survey_at(line) if done else None,
    )


def _survey_at(line: LineRun) -> datetime | None:
    """When the customer of a line that just shipped its last units is asked how the wait
    went: `survey_after_days` after the last shipment; None without a survey, or for a line
    of an earlier release, which starts its survey's workflow as it ends (`ask_later`)."""
    after = line.policy.survey_after_days
    if after is None or not versions.patched(SURVEYS_IN_STORE_PATCH):
        return None
    last = max(shipment.created_at for shipment in line.book.shipments)
    return last + line.policy.days(after)


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


async def delay_notice(line: LineRun) -> None:
    """The law's delay-option notice for the current promise, sent now."""
    timeline = line.book.timeline
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


async def announce_delay(line: LineRun) -> None:
    """A delay notice out of the timeline's schedule (a line sold over the limit, a release
    moved later), and the escalation ops see. Without a date, silence is not consent: the
    customer agrees to wait, or the line is cancelled and refunded at its deadline."""
    await delay_notice(line)
    line.show_escalation()


async def tell_release_moved(line: LineRun) -> None:
    """A preorder's release moved later: a change of the promise. The customer is told once:
    with the law's delay notice when the new date passes the promise (the old release plus
    handling; its silent-consent window counts from the old date), otherwise with the new date.
    """
    timeline = line.book.timeline
    event = f"release:{line.book.release_moved_to:%Y%m%d%H%M%S}"
    if versions.patched(ETA_PATCH):
        await _tell_release_moved(line, event)
        return
    eta = timeline.eta
    if timeline.promise is None or eta is None or eta <= timeline.promise:
        await line.send(
            MessageKind.ETA_UPDATE,
            event,
            links=[line.link(LinkAction.CANCEL)],
        )
        return
    await announce_delay(line)


async def _tell_release_moved(line: LineRun, event: str) -> None:
    """The one message of the moment a release moved: the delay notice (with the offers due)
    when the new date, or no date (a release moved to a day already gone), misses the promise,
    else the new date as the run's loop tells one (`moment.tell_eta`): with a consent still
    pending and what else is due, and nothing before a cancel due now."""
    book = line.book
    timeline = book.timeline
    now = workflow.now()
    if timeline.promise is None or timeline.keeps_promise(now):
        await moment.tell_eta(line, event)
        return
    eta = timeline.eta
    if book.fully_allocated and eta is not None and eta <= timeline.promise:
        return  # held for a release already gone: it ships now, and the shipment tells it
    if book.cancel_due(line.policy, now):
        return
    steps = timeline.due_together(line.policy, now, dated=True)
    if not any(step.kind is StepKind.DELAY_NOTICE for step in steps):
        steps.append(Step(kind=StepKind.DELAY_NOTICE, at=now))
    await moment.tell(line, steps, now)
    line.show_escalation()


async def take_step(line: LineRun, step: Step) -> None:
    """Carry out one deadline of the timeline; each is recorded so it happens once."""
    timeline = line.book.timeline
    patched = step.kind in MESSAGES and versions.patched(moment.PATCH)
    if patched:
        step = moment.overtaken(line, step)
    if patched and step.kind in MESSAGES:
        await moment.take(line, step)
    elif step.kind is StepKind.ETA_UPDATE:
        pass  # the quiet period is over: the run's loop tells the new date
    elif step.kind is StepKind.DELAY_NOTICE:
        await delay_notice(line)
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
    elif step.kind is StepKind.SHIP_AT_RELEASE:
        line.book.hold_until = None  # the release came: held stock ships now
        return
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
    line.show_escalation()


def history_full(line: LineRun) -> bool:
    """The history passed the policy's bound, or Temporal suggests a new run. Behind a patch:
    runs of earlier code never continue as new on replay."""
    info = workflow.info()
    full = (
        info.get_current_history_length() >= line.policy.history_events_limit
        or info.is_continue_as_new_suggested()
    )
    return full and versions.patched("continue-as-new-long-waits")


def continue_as_new(line: LineRun) -> None:
    """Hand the book to a new run (raises, ending this one)."""
    carried = {"carried": line.book.carried(), "release": versions.NEWEST}
    workflow.continue_as_new(line.line.model_copy(update=carried))


async def ask_later(line: LineRun) -> None:
    """A shipped line of an earlier release, as it ends, starts the workflow that asks its
    customer how the wait went, `survey_after_days` after the last shipment
    (`workflows.survey`); the line closes now. A line of this release left its survey in the
    store with its last message (`_survey_at`)."""
    after = line.policy.survey_after_days
    book = line.book
    if book.state is not LineState.SHIPPED or after is None or not book.shipments:
        return
    if versions.patched(SURVEYS_IN_STORE_PATCH) or not versions.patched(SURVEY_PATCH):
        return
    last = max(shipment.created_at for shipment in book.shipments)
    survey = SurveyInput(
        line_key=line.key,
        request=line.request,
        ship_by=line.line.ship_by,
        ask_at=last + line.policy.days(after),
    )
    await line.call(START_SURVEY, survey, summary="start the survey after the wait")
