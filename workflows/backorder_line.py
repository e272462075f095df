"""BackorderLineWorkflow: one backordered order line, from sold to shipped or refunded."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from domain import contract
from domain.contract.lines import (
    ACCEPT_OFFER,
    AGREE_TO_WAIT,
    ALLOCATED,
    CANCEL,
    CANCEL_MARKETPLACE_DEADLINE,
    CANCEL_NO_CONSENT,
    CREATE_SHIPMENT,
    ETA_CHANGED,
    FIND_SUBSTITUTES,
    GRANT_OFFER,
    LINE_WORKFLOW,
    ORDER_CHANGED,
    ORDER_SHIPPED,
    RECORD_LINE,
    RECORD_OUTREACH,
    REFUND,
    RELEASE_LINE,
    SEND_MESSAGE,
    STATUS,
    SUBSTITUTE_LINE,
    TAKE_SUBSTITUTE,
    line_key,
)
from domain.contract.options import MESSAGE_RETRY, RETRY, SERVICE_TIMEOUT, STORE_TIMEOUT
from domain.contract.orders import JOIN_ORDER, LINE_READY, WITHDRAW_FROM_ORDER, order_workflow_id
from domain.contract.stock import RECEIPT_PREFIX, SIGNAL_ALLOCATIONS
from domain.line.choices import (
    AcceptOffer,
    AgreeToWait,
    FindSubstitutes,
    Offer,
    OfferGrant,
    OfferStatus,
    OutreachInput,
    SubstituteInput,
    SubstituteOption,
    SubstituteResult,
    TakeSubstitute,
)
from domain.line.effects import (
    CancelRequest,
    CancelResult,
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ReleaseResult,
    ShipmentInput,
    ShipmentRecord,
)
from domain.line.input import CarriedState, EtaUpdate, LineInput, line_summary
from domain.line.messages import LinkSpec, MessageInput, MessageKind, MessageRecord
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.line.timeline import Step, StepKind, Timeline
from domain.links import LinkAction
from domain.orders import JoinOrder, LineReady, OrderChange, OrderInput, OrderShipped, Withdraw
from domain.policy import OfferKind
from domain.stock import AllocationNotice, SignalAllocationsInput
from domain.values import ShipPolicy
from workflows.calls import call, local_first
from workflows.etas import refresh_etas


@workflow.defn(name=LINE_WORKFLOW.name)
class BackorderLineWorkflow:
    """Carries one backordered line until it has shipped in full or been cancelled and refunded.

    It lives by the policy snapshot in its input: the delay-option notices of the law, the
    escalation ladder's offers, and the marketplace's auto-cancel (see `domain.line`), each a
    durable timer that fires once.

    Signals:
        allocated(AllocationNotice): stock was allocated to this line in the store. Counted once
            per allocation id, so the at-least-once fan-out of receipts is safe.
        eta_changed(EtaUpdate): the expected ship date moved; a real change of date tells the
            customer once, and a date past the promise starts the delay-notice rules.
    Updates:
        agree_to_wait(AgreeToWait) -> LineStatus: the customer consents to the delay.
        accept_offer(AcceptOffer) -> Offer: the customer takes a goodwill offer (which is also
            consent to wait). Refused, with a reason the customer can read, for an unknown,
            already used, withdrawn or expired offer, or a line already final.
        take_substitute(TakeSubstitute) -> LineStatus: move the line to an in-stock substitute
            from the catalog; its held units go back to the old SKU's queue. Refused when the
            SKU is not a substitute or not in stock for what the line still needs.
        cancel(CancelRequest) -> CancelResult: cancel whatever has not shipped, give held stock
            to the next lines in the queue, refund in full. Refused once the line is final;
            fails with AlreadyShipped when the last units shipped while it waited.
    Queries:
        status() -> LineStatus: the line as this workflow sees it.
    """

    @workflow.init
    def __init__(self, line: LineInput) -> None:
        self._line = line
        self._key = line_key(line.request.order_id, line.request.line_id)
        self._state = LineState.RECEIVED
        self._allocated = 0
        self._shipped = 0
        self._released = 0
        """Units given back when the line moved to a substitute."""
        self._seen_allocations: set[int] = set()
        self._shipments: list[ShipmentRecord] = []
        self._messages: list[MessageRecord] = []
        self._refunds: list[RefundRecord] = []
        self._cancel_request: CancelRequest | None = None
        self._cancel_result: CancelResult | None = None
        self._policy = line.policy
        self._timeline = Timeline.start(line.ship_by)
        self._offers: list[Offer] = []
        self._expedited = False
        self._eta_changes = 0
        self._eta_news = False
        self._wake = False
        self._next: Step | None = None
        self._with_order = line.request.ships_with_order
        """Held for the other lines of its ship-complete order, until released."""
        self._reported_ready = False
        self._order_shipment: ShipmentRecord | None = None
        self._order_news: list[OrderChange] = []
        self._runs = 0
        self._local = False
        """Short calls go local-first (`workflows.calls`); set as the run starts."""
        if line.carried is not None:
            self._resume(line.carried)
        # Shipping, cancelling, taking a substitute and paying a goodwill refund each read and
        # change what the line holds or is owed: one at a time, or stock could be counted twice.
        self._lock = asyncio.Lock()

    # ---- the life of the line -----------------------------------------------------------

    @workflow.run
    async def run(self, line: LineInput) -> LineStatus:
        self._local = local_first()
        if line.carried is None:
            await self._begin(line)
        else:
            self._show_details()  # a new run starts with none
        while not self._state.is_final:
            if self._eta_news:
                self._eta_news = False
                await self._send(
                    MessageKind.ETA_UPDATE,
                    f"eta:{self._eta_changes}",
                    links=[self._link(LinkAction.CANCEL)],
                )
                continue
            if self._order_news:
                await self._tell_order_change(self._order_news.pop(0))
                continue
            if self._history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._eta_news or self._order_news:
                    continue  # news came in while handlers finished: tell it first
                if not self._has_work() and not self._state.is_final:
                    workflow.continue_as_new(
                        self._line.model_copy(update={"carried": self._carry()})
                    )
            step = self._show_next_step()
            if await self._wait_for_news(step):
                if self._order_news or self._eta_news:
                    continue  # tell the customer first, then act
                async with self._lock:
                    if self._cancel_request is not None and not self._state.is_final:
                        await self._cancel(self._cancel_request)
                    elif self._order_ready_due():
                        await self._report_ready()
                    elif self._shippable() > 0:
                        await self._ship(self._shippable())
            elif step is not None:
                await self._take_step(step)
        while self._order_news and self._state is LineState.SHIPPED:
            await self._tell_order_change(self._order_news.pop(0))
        # Let a cancel that arrived during the last shipment read its answer before we finish.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _begin(self, line: LineInput) -> None:
        """The first run: record the line in the queue, join its order, confirm to the customer."""
        recorded = await self._record()
        if self._with_order:
            await self._join_order()
        # Local-first runs decide from the recorded result alone: a retried workflow task may
        # bring an allocation signal the lost attempt did not see, and must still send (and so
        # record) the confirmation that attempt may already have sent.
        short = recorded.allocated_quantity if self._local else self._held() + self._shipped
        if short < line.request.quantity:
            # Where the line stands in the queue against inbound supply: its first ETA.
            if self._local:
                # The store dated the line as it queued it; only lines it went ahead of (an
                # earlier ship-by) need their ETAs recomputed and their customers told.
                self._timeline.set_eta(recorded.eta)
                if recorded.lines_behind:
                    await refresh_etas(line.request.sku)
            else:
                self._timeline.set_eta(await refresh_etas(line.request.sku, for_line=self._key))
            # The link's validity counts from the line's start, not from now: the message then
            # reads the same if a lost workflow task sends it again (see `_send`).
            valid_until = workflow.info().start_time + self._policy.days(90)
            await self._send(
                MessageKind.BACKORDER_CONFIRMATION,
                "confirmation",
                links=[self._link(LinkAction.CANCEL, expires_at=valid_until)],
                stable=True,
            )

    # ---- long waits: continue as new -----------------------------------------------------

    def _history_full(self) -> bool:
        """The history passed the policy's bound, or Temporal suggests a new run. Behind a patch:
        runs of earlier code never continue as new on replay."""
        info = workflow.info()
        full = (
            info.get_current_history_length() >= self._policy.history_events_limit
            or info.is_continue_as_new_suggested()
        )
        return full and workflow.patched("continue-as-new-long-waits")

    def _has_work(self) -> bool:
        """Something to do now: a cancel, units to ship, or the order to tell it is whole."""
        return self._cancel_request is not None or self._shippable() > 0 or self._order_ready_due()

    def _carry(self) -> CarriedState:
        return CarriedState(
            runs=self._runs + 1,
            state=self._state,
            allocated=self._allocated,
            shipped=self._shipped,
            released=self._released,
            seen_allocations=sorted(self._seen_allocations),
            shipments=self._shipments,
            messages=self._messages,
            refunds=self._refunds,
            timeline=self._timeline,
            offers=self._offers,
            expedited=self._expedited,
            eta_changes=self._eta_changes,
            with_order=self._with_order,
            reported_ready=self._reported_ready,
            order_shipment=self._order_shipment,
        )

    def _resume(self, carried: CarriedState) -> None:
        self._runs = carried.runs
        self._state = carried.state
        self._allocated = carried.allocated
        self._shipped = carried.shipped
        self._released = carried.released
        self._seen_allocations = set(carried.seen_allocations)
        self._shipments = list(carried.shipments)
        self._messages = list(carried.messages)
        self._refunds = list(carried.refunds)
        self._timeline = carried.timeline
        self._offers = list(carried.offers)
        self._expedited = carried.expedited
        self._eta_changes = carried.eta_changes
        self._with_order = carried.with_order
        self._reported_ready = carried.reported_ready
        self._order_shipment = carried.order_shipment

    async def _wait_for_news(self, step: Step | None) -> bool:
        """Wait for something to do; False when the step's time came first."""
        self._wake = False

        def news() -> bool:
            return self._has_work() or self._wake

        if step is None:
            await workflow.wait_condition(news)
            return True
        delay = step.at - workflow.now()
        if delay <= timedelta(0):
            return news()
        try:
            await workflow.wait_condition(news, timeout=delay, timeout_summary=step.describe())
        except TimeoutError:
            return False
        return True

    async def _take_step(self, step: Step) -> None:
        """Carry out one deadline of the timeline; each is recorded so it happens once."""
        now = workflow.now()
        if step.kind is StepKind.DELAY_NOTICE:
            facts = self._timeline.record_notice(now, self._policy)
            substitutes, links = await self._substitute_choices()
            links.append(self._link(LinkAction.CANCEL))
            if not facts.silence_is_consent:
                links.append(self._link(LinkAction.WAIT, expires_at=facts.answer_by))
            await self._send(
                MessageKind.DELAY_NOTICE,
                f"notice:{self._timeline.notices}",
                notice=facts,
                substitutes=substitutes,
                links=links,
            )
        elif step.kind is StepKind.OFFER:
            assert step.rung is not None
            await self._offer(step.rung)
        elif step.kind is StepKind.CHOICE_REQUEST:
            self._timeline.record_choice_request()
            substitutes, links = await self._substitute_choices()
            await self._send(
                MessageKind.CHOICE_REQUEST,
                "choice",
                substitutes=substitutes,
                links=[*links, self._link(LinkAction.WAIT), self._link(LinkAction.CANCEL)],
                deadline=self._policy.auto_cancel_at(self._line.ship_by),
            )
        elif step.kind is StepKind.CANCEL_NO_CONSENT:
            self._cancel_request = CancelRequest(reason=CANCEL_NO_CONSENT, requested_by="policy")
            async with self._lock:
                await self._cancel(self._cancel_request)
        else:
            self._cancel_request = CancelRequest(
                reason=CANCEL_MARKETPLACE_DEADLINE, requested_by="policy"
            )
            async with self._lock:
                await self._cancel(self._cancel_request)
        workflow.upsert_search_attributes(
            [contract.SA_ESCALATION_LEVEL.value_set(self._timeline.escalation_level)]
        )

    async def _offer(self, index: int) -> None:
        """A rung of the ladder: apologise, with the offers the catalogue gives this line."""
        rung = self._policy.channel.ladder[index]
        self._timeline.record_rung(index)
        request = self._line.request
        rule = rung.rule_for(request.line_total(), request.customer.tier)
        if rule is None:
            return
        expires_at = workflow.now() + self._policy.days(self._policy.offer_valid_days)
        offers = [
            Offer(
                offer_id=f"{rung.name}-{number}",
                rung=rung.name,
                kind=spec.kind,
                percent=spec.percent,
                points=spec.points,
                description=spec.describe(),
                expires_at=expires_at,
            )
            for number, spec in enumerate(rule.offers, 1)
        ]
        self._offers.extend(offers)
        if rule.outreach:
            await self._call(
                RECORD_OUTREACH.name,
                OutreachInput(
                    line_key=self._key,
                    request=request,
                    rung=rung.name,
                    reason=f"{rung.name}: {request.customer.tier.value} customer, "
                    f"{request.line_total():.2f} {request.currency} waiting",
                ),
                start_to_close=STORE_TIMEOUT,
                retry=RETRY,
                summary=f"outreach task for customer service ({rung.name})",
            )
        links = [self._link(LinkAction.ACCEPT_OFFER, offer) for offer in offers]
        substitutes, substitute_links = await self._substitute_choices()
        await self._send(
            MessageKind.APOLOGY_OFFER,
            f"offer:{rung.name}",
            offers=offers,
            substitutes=substitutes,
            links=[*links, *substitute_links, self._link(LinkAction.CANCEL)],
        )

    # ---- ship-complete orders ----------------------------------------------------------

    def _order_input(self) -> OrderInput:
        request = self._line.request
        return OrderInput(
            order_id=request.order_id,
            line_ids=request.order_lines,
            in_stock_lines=request.in_stock_lines,
            customer_id=request.customer.id,
        )

    async def _join_order(self) -> None:
        await self._call(
            JOIN_ORDER.name,
            JoinOrder(order=self._order_input(), line_id=self._line.request.line_id),
            start_to_close=STORE_TIMEOUT,
            retry=RETRY,
            summary=f"join ship-complete order {self._line.request.order_id}",
            local=False,  # reports the line as it is now: see `_call`
        )

    def _order_ready_due(self) -> bool:
        complete = self._held() + self._shipped >= self._line.request.quantity
        return self._with_order and complete and not self._reported_ready

    async def _report_ready(self) -> None:
        request = self._line.request
        order = workflow.get_external_workflow_handle(order_workflow_id(request.order_id))
        await order.signal(
            LINE_READY.name,
            LineReady(line_id=request.line_id, sku=request.sku, quantity=self._held()),
        )
        self._reported_ready = True
        self._show_details()

    async def _withdraw_from_order(self) -> bool:
        request = self._line.request
        withdrawn: bool = await self._call(
            WITHDRAW_FROM_ORDER.name,
            Withdraw(order_id=request.order_id, line_id=request.line_id),
            result_type=bool,
            start_to_close=STORE_TIMEOUT,
            retry=RETRY,
            summary=f"leave ship-complete order {request.order_id}",
            local=False,  # reports the line as it is now: see `_call`
        )
        if withdrawn:
            self._with_order = False
        return withdrawn

    async def _tell_order_change(self, change: OrderChange) -> None:
        if change.released:
            self._with_order = False
            plan = "This item will now ship on its own as soon as it is in stock."
        else:
            plan = "This item will still ship together with the rest of your order."
        await self._send(
            MessageKind.ORDER_UPDATE,
            f"order-change:{change.cancelled_line}",
            detail=f"Line {change.cancelled_line} of your order {self._line.request.order_id} "
            f"was cancelled. {plan}",
            links=[self._link(LinkAction.CANCEL)],
        )

    @workflow.signal(name=ORDER_SHIPPED.name)
    def order_shipped(self, shipped: OrderShipped) -> None:
        self._order_shipment = shipped.shipment

    @workflow.signal(name=ORDER_CHANGED.name)
    def order_changed(self, change: OrderChange) -> None:
        if not self._state.is_final:
            self._order_news.append(change)
            self._wake = True

    async def _substitute_choices(self) -> tuple[list[SubstituteOption], list[LinkSpec]]:
        """The catalog's substitutes in stock for what the line still needs, with their links."""
        options: list[SubstituteOption] = await self._call(
            FIND_SUBSTITUTES.name,
            FindSubstitutes(
                sku=self._line.request.sku, quantity=self._line.request.quantity - self._shipped
            ),
            result_type=list[SubstituteOption],
            start_to_close=STORE_TIMEOUT,
            retry=RETRY,
            summary="find in-stock substitutes",
        )
        links = [
            LinkSpec(
                action=LinkAction.SUBSTITUTE,
                offer_id=option.sku,
                expires_at=workflow.now() + self._policy.days(self._policy.offer_valid_days),
            )
            for option in options
        ]
        return options, links

    def _show_next_step(self) -> Step | None:
        step = self._timeline.next_step(
            self._policy,
            fully_allocated=self._allocated - self._released >= self._line.request.quantity,
        )
        if step != self._next:
            self._next = step
            self._show_details()
        return step

    async def _record(self) -> RecordLineResult:
        recorded: RecordLineResult = await self._call(
            RECORD_LINE.name,
            self._line,
            result_type=RecordLineResult,
            start_to_close=STORE_TIMEOUT,
            retry=RETRY,
            summary=f"queue {self._line.request.quantity} x {self._line.request.sku}",
            local=False,  # reports the line as it is now: see `_call`
        )
        others = []
        for notice in recorded.allocations:
            if notice.line_key == self._key:
                self._take(notice)
            else:
                others.append(notice)
        if others:
            await self._signal_others(others)
        # Non-zero only when the line was recorded by an earlier run of this workflow id.
        self._shipped = recorded.shipped_quantity
        if recorded.state is LineState.CANCELLED:
            self._set_state(LineState.CANCELLED)
        else:
            self._refresh_state()
        return recorded

    def _held(self) -> int:
        """Units allocated to the line, of its current SKU, not yet shipped."""
        return self._allocated - self._released - self._shipped

    def _shippable(self) -> int:
        """Units to ship now: whatever is held, or nothing until complete for ship-complete."""
        if self._with_order:
            # The order ships it; the line records its part once told.
            return self._held() if self._order_shipment is not None else 0
        if self._line.request.ship_policy is ShipPolicy.COMPLETE:
            complete = self._held() + self._shipped >= self._line.request.quantity
            return self._held() if complete else 0
        return self._held()

    async def _ship(self, quantity: int) -> None:
        sequence = len(self._shipments) + 1
        shipment: ShipmentRecord = await self._call(
            CREATE_SHIPMENT.name,
            ShipmentInput(
                line_key=self._key,
                request=self._line.request,
                sequence=sequence,
                quantity=quantity,
                expedited=self._expedited,
                order_shipment=self._order_shipment,
            ),
            result_type=ShipmentRecord,
            start_to_close=SERVICE_TIMEOUT,
            retry=RETRY,
            summary=f"ship {quantity} x {self._line.request.sku}",
            # The quantity comes from allocation signals: a retried task that saw one more would
            # ask the carrier for another quantity under the same shipment key.
            local=False,
        )
        self._shipments.append(shipment)
        self._shipped += shipment.quantity
        done = self._shipped >= self._line.request.quantity
        self._refresh_state()
        await self._send(
            MessageKind.SHIPPED if done else MessageKind.PARTIALLY_SHIPPED,
            f"shipment:{sequence}",
            shipment=shipment,
            quantity=self._shipped,
            links=[] if done else [self._link(LinkAction.CANCEL)],
        )

    async def _cancel(self, request: CancelRequest) -> None:
        if self._with_order and not await self._withdraw_from_order():
            # The order's shipment already took this line's units: it ships instead.
            self._cancel_request = None
            return
        released: ReleaseResult = await self._call(
            RELEASE_LINE.name,
            ReleaseInput(line_key=self._key, sku=self._line.request.sku, reason=request.reason),
            result_type=ReleaseResult,
            start_to_close=STORE_TIMEOUT,
            retry=RETRY,
            summary=f"release {self._line.request.sku} ({request.reason})",
        )
        # The store is the truth: it saw allocations whose signals may still be on their way.
        self._allocated = released.allocated_quantity
        self._set_state(LineState.CANCELLED)
        if released.reallocated:
            await self._signal_others(released.reallocated)
        await refresh_etas(self._line.request.sku)  # the lines behind it move up
        refund: RefundRecord | None = None
        # In full for what did not ship, less what a partial-refund offer already paid back.
        already = sum((Decimal(r.amount) for r in self._refunds), Decimal(0))
        owed = self._line.request.line_total(released.refund_quantity) - already
        if released.refund_quantity > 0 and owed > 0:
            refund = await self._call(
                REFUND.name,
                RefundInput(
                    line_key=self._key,
                    request=self._line.request,
                    quantity=released.refund_quantity,
                    reason=request.reason,
                    amount=f"{owed:.2f}",
                ),
                result_type=RefundRecord,
                start_to_close=SERVICE_TIMEOUT,
                retry=RETRY,
                summary=f"refund {released.refund_quantity} x {self._line.request.unit_price}",
            )
            self._refunds.append(refund)
        await self._send(
            MessageKind.CANCELLED_REFUNDED,
            "cancelled",
            refund_amount=refund.amount if refund else "0",
            detail=f"Why: {request.reason}." if request.requested_by == "policy" else None,
        )
        self._cancel_result = CancelResult(
            state=LineState.CANCELLED, released_quantity=released.released_quantity, refund=refund
        )

    # ---- helpers ------------------------------------------------------------------------

    def _take(self, notice: AllocationNotice) -> None:
        if notice.allocation_id in self._seen_allocations or self._state.is_final:
            return
        self._seen_allocations.add(notice.allocation_id)
        self._allocated += notice.quantity
        if self._state is not LineState.RECEIVED:  # _record sets the first state itself
            self._refresh_state()

    def _refresh_state(self) -> None:
        self._set_state(
            LineState.of(
                self._line.request.quantity, self._allocated - self._released, self._shipped
            )
        )

    async def _call(
        self,
        activity: str,
        arg: Any,
        *,
        start_to_close: timedelta,
        summary: str,
        result_type: type | None = None,
        retry: RetryPolicy = RETRY,
        local: bool = True,
    ) -> Any:
        """An activity, local-first in runs that allow it (`workflows.calls`).

        Local activities that follow one another run inside one workflow task; if the worker
        dies before the task completes, they all run again. That is safe for keyed effects
        (a message, a refund, a grant: a repeat returns the first result) whose input, and the
        decision to make it, the history before the task alone decides (nothing from
        `workflow.now()`, which a new attempt of the task moves, nor from signals, which a new
        attempt may bring more of), and for reads. Calls that report the line as the store sees it
        now (`local=False`: queueing it, order membership, a substitution) would, run again,
        report what the later lost steps already did; they stay regular activities, whose
        results are recorded at once.
        """
        return await call(
            activity,
            arg,
            local=self._local and local,
            result_type=result_type,
            start_to_close=start_to_close,
            retry=retry,
            summary=summary,
        )

    async def _signal_others(self, notices: list[AllocationNotice]) -> None:
        await workflow.execute_activity(
            SIGNAL_ALLOCATIONS.name,
            SignalAllocationsInput(allocations=notices, skip_line_key=self._key),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=RETRY,
            summary=f"tell {len(notices)} waiting lines of their stock",
        )

    def _link(
        self,
        action: LinkAction,
        offer: Offer | None = None,
        *,
        expires_at: datetime | None = None,
    ) -> LinkSpec:
        if expires_at is None:
            expires_at = offer.expires_at if offer else workflow.now() + self._policy.days(90)
        return LinkSpec(
            action=action, offer_id=offer.offer_id if offer else None, expires_at=expires_at
        )

    async def _send(
        self, kind: MessageKind, event_key: str, *, stable: bool | None = None, **content: Any
    ) -> None:
        """One message for one event; `content` fills the rest of `MessageInput`.

        `stable`: the content is the same when a lost workflow task computes it again, so the
        message may go local-first (the notification service refuses a repeated idempotency key
        with another body). By default, only a message without links is: a link's validity
        usually counts from `workflow.now()`, which a new attempt of the task moves."""
        if stable is None:
            stable = not content.get("links")
        try:
            message: MessageRecord = await self._call(
                SEND_MESSAGE.name,
                MessageInput(
                    line_key=self._key,
                    request=self._line.request,
                    kind=kind,
                    event_key=event_key,
                    ship_by=self._line.ship_by,
                    eta=self._timeline.eta,
                    **content,
                ),
                result_type=MessageRecord,
                start_to_close=SERVICE_TIMEOUT,
                retry=MESSAGE_RETRY,
                summary=f"message: {kind}",
                local=stable,
            )
        except ActivityError as exc:
            workflow.logger.warning("message %s to the customer was refused: %s", kind, exc.cause)
            return
        self._messages.append(message)
        self._show_details()  # "last message" (not a command: replay is unaffected)

    def _set_state(self, state: LineState) -> None:
        if state == self._state:
            return
        self._state = state
        workflow.upsert_search_attributes([contract.SA_STATE.value_set(state.value)])
        self._show_details()

    def _show_details(self) -> None:
        """What ops see on the workflow in the UI: state, ETA, the next deadline, last message."""
        quantity = self._line.request.quantity
        parts = []
        if self._runs:
            # A continued run has no static summary (continue-as-new does not carry it).
            summary = line_summary(self._line.request, self._line.ship_by)
            parts.append(f"{summary} (run {self._runs + 1}: continued as new)")
        parts += [
            f"**{self._state.value}**: {self._allocated} allocated, {self._shipped} shipped "
            f"of {quantity}",
            f"ETA: {self._timeline.eta:%d %b %Y}" if self._timeline.eta else "ETA: no date",
        ]
        if self._next is not None and not self._state.is_final:
            parts.append(f"next: {self._next.describe()} at {self._next.at:%d %b %Y %H:%M} UTC")
        if self._messages:
            parts.append(f"last message: {self._messages[-1].kind.value}")
        workflow.set_current_details("\n\n".join(parts))

    # ---- messages from outside ----------------------------------------------------------

    @workflow.signal(name=ALLOCATED.name)
    def allocated(self, notice: AllocationNotice) -> None:
        counted = len(self._seen_allocations)
        self._take(notice)
        if len(self._seen_allocations) > counted:
            self._show_receipt(notice.source)

    def _show_receipt(self, source: str) -> None:
        """Ops find the lines a receipt gave stock to by `BackorderReceiptId` (the latest one).

        A command added on an existing path, so it sits behind `workflow.patched`: a line
        that got a receipt's stock before this code has no patch marker in its history and
        replays without the upsert (unpatched, such a history fails to replay: TMPRL1100).
        """
        if not source.startswith(RECEIPT_PREFIX):
            return  # catalog stock, or units another line released
        receipt_id = source.removeprefix(RECEIPT_PREFIX).split(":", 1)[-1]
        if workflow.patched("receipt-search-attribute"):
            workflow.upsert_search_attributes([contract.SA_RECEIPT_ID.value_set(receipt_id)])

    @workflow.signal(name=ETA_CHANGED.name)
    def eta_changed(self, update: EtaUpdate) -> None:
        if self._state.is_final:
            return
        if self._timeline.set_eta(update.eta):
            self._eta_changes += 1
            self._eta_news = True
        self._wake = True

    @workflow.update(name=AGREE_TO_WAIT.name)
    def agree_to_wait(self, request: AgreeToWait) -> LineStatus:
        self._timeline.agree_to_wait()
        self._wake = True
        return self.status()

    @agree_to_wait.validator
    def _validate_wait(self, request: AgreeToWait) -> None:
        self._refuse_if_final()

    @workflow.update(name=ACCEPT_OFFER.name)
    async def accept_offer(self, request: AcceptOffer) -> Offer:
        offer = self._find_offer(request.offer_id)
        offer.status = OfferStatus.ACCEPTED
        for sibling in self._offers:
            if sibling.rung == offer.rung and sibling.status is OfferStatus.OPEN:
                sibling.status = OfferStatus.WITHDRAWN
        self._timeline.agree_to_wait()
        self._wake = True
        async with self._lock:
            detail = await self._grant(offer)
        await self._send(
            MessageKind.OFFER_ACCEPTED,
            f"accepted:{offer.offer_id}",
            detail=detail,
            accepted_offer_id=offer.offer_id,
        )
        return offer

    @accept_offer.validator
    def _validate_offer(self, request: AcceptOffer) -> None:
        self._refuse_if_final()
        offer = self._find_offer(request.offer_id)
        if offer.status is OfferStatus.ACCEPTED:
            raise ApplicationError(
                "You have already accepted this offer.", type=contract.ERROR_OFFER_USED
            )
        if offer.status is OfferStatus.WITHDRAWN:
            raise ApplicationError(
                "You have already chosen another offer.", type=contract.ERROR_OFFER_USED
            )
        if workflow.now() >= offer.expires_at:
            raise ApplicationError("This offer has expired.", type=contract.ERROR_OFFER_EXPIRED)

    def _find_offer(self, offer_id: str) -> Offer:
        for offer in self._offers:
            if offer.offer_id == offer_id:
                return offer
        raise ApplicationError(
            "We could not find this offer for your order.", type=contract.ERROR_OFFER_UNKNOWN
        )

    def _refuse_if_final(self) -> None:
        if self._state.is_final:
            raise ApplicationError(
                f"This item has already been {self._state.value}.", type=contract.ERROR_LINE_FINAL
            )

    async def _pay_back(self, amount: Decimal, *, event: str, reason: str) -> RefundRecord:
        """A refund of part of the price while the line goes on (goodwill, cheaper substitute)."""
        refund: RefundRecord = await self._call(
            REFUND.name,
            RefundInput(
                line_key=self._key,
                request=self._line.request,
                quantity=0,
                reason=reason,
                event=event,
                amount=f"{amount:.2f}",
            ),
            result_type=RefundRecord,
            start_to_close=SERVICE_TIMEOUT,
            retry=RETRY,
            summary=f"refund {amount:.2f}: {reason}",
        )
        self._refunds.append(refund)
        return refund

    async def _grant(self, offer: Offer) -> str:
        """Deliver an accepted offer; returns what to tell the customer."""
        if offer.kind is OfferKind.FREE_EXPEDITED_SHIPPING:
            self._expedited = True
            return "It will ship by expedited shipping, at no cost to you, as soon as it arrives."
        if offer.kind is OfferKind.PARTIAL_REFUND:
            amount = self._line.request.line_total() * Decimal(offer.percent or 0) / 100
            refund = await self._pay_back(
                amount, event=f"offer:{offer.offer_id}", reason=f"goodwill: {offer.description}"
            )
            return f"We have refunded {refund.amount} {refund.currency} to you."
        granted: str = await self._call(
            GRANT_OFFER.name,
            OfferGrant(line_key=self._key, request=self._line.request, offer=offer),
            result_type=str,
            start_to_close=SERVICE_TIMEOUT,
            retry=RETRY,
            summary=f"grant {offer.kind.value}",
        )
        return granted

    @workflow.update(name=TAKE_SUBSTITUTE.name)
    async def take_substitute(self, request: TakeSubstitute) -> LineStatus:
        async with self._lock:
            self._refuse_if_final()
            old = self._line.request
            try:
                moved: SubstituteResult = await self._call(
                    SUBSTITUTE_LINE.name,
                    SubstituteInput(line_key=self._key, from_sku=old.sku, to_sku=request.sku),
                    result_type=SubstituteResult,
                    start_to_close=STORE_TIMEOUT,
                    retry=RETRY,
                    summary=f"move to substitute {request.sku}",
                    local=False,  # reports the line as it is now: see `_call`
                )
            except ActivityError as exc:
                cause = exc.cause
                if isinstance(cause, ApplicationError):
                    raise ApplicationError(cause.message, type=cause.type) from None
                raise
            self._line.request = old.model_copy(update={"sku": request.sku})
            self._released += moved.released_quantity
            self._allocated += moved.quantity
            self._refresh_state()
            workflow.upsert_search_attributes([contract.SA_SKU.value_set(request.sku)])
            if moved.reallocated:
                await self._signal_others(moved.reallocated)
            await refresh_etas(old.sku)
            detail = f"You chose {request.sku} in place of {old.sku}; it ships now."
            saved = Decimal(old.unit_price) - Decimal(moved.unit_price or old.unit_price)
            if saved > 0:
                # Priced by policy: a cheaper substitute's difference is refunded; a dearer
                # one costs the customer nothing more.
                refund = await self._pay_back(
                    saved * moved.quantity,
                    event=f"substitute:{request.sku}",
                    reason=f"substitute {request.sku} costs less",
                )
                detail += f" It costs less: we refunded {refund.amount} {refund.currency}."
        self._wake = True
        await self._send(MessageKind.OFFER_ACCEPTED, f"substitute:{request.sku}", detail=detail)
        return self.status()

    @take_substitute.validator
    def _validate_substitute(self, request: TakeSubstitute) -> None:
        self._refuse_if_final()
        if request.sku == self._line.request.sku:
            raise ApplicationError(
                "This is already the item you are waiting for.",
                type=contract.ERROR_SUBSTITUTE_REFUSED,
            )

    @workflow.update(name=CANCEL.name)
    async def cancel(self, request: CancelRequest) -> CancelResult:
        if self._cancel_request is None:
            self._cancel_request = request
        await workflow.wait_condition(
            lambda: self._cancel_result is not None or self._state is LineState.SHIPPED
        )
        if self._cancel_result is None:
            raise ApplicationError(
                "the line shipped in full before the cancel could take effect",
                type=contract.ERROR_ALREADY_SHIPPED,
            )
        return self._cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse_if_final()

    @workflow.query(name=STATUS.name)
    def status(self) -> LineStatus:
        request = self._line.request
        return LineStatus(
            order_id=request.order_id,
            line_id=request.line_id,
            workflow_id=self._key,
            sku=request.sku,
            quantity=request.quantity,
            unit_price=request.unit_price,
            currency=request.currency,
            channel=request.channel,
            customer=request.customer,
            ordered_at=request.ordered_at,
            ship_by=self._line.ship_by,
            ship_policy=request.ship_policy,
            state=self._state,
            allocated_quantity=self._allocated,
            shipped_quantity=self._shipped,
            messages=list(self._messages),
            shipments=list(self._shipments),
            refunds=list(self._refunds),
            cancel_reason=self._cancel_request.reason if self._cancel_request else None,
            eta=self._timeline.eta,
            escalation_level=self._timeline.escalation_level,
            next_deadline=None if self._state.is_final or not self._next else self._next.at,
            next_action=None if self._state.is_final or not self._next else self._next.describe(),
            consent=self._timeline.consent.value,
            offers=[offer.model_dump(mode="json") for offer in self._offers],
        )
