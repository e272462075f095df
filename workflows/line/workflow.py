"""BackorderLineWorkflow: one backordered order line, from sold to shipped or refunded."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain import contract
from domain.contract.lines import (
    ACCEPT_OFFER,
    AGREE_TO_WAIT,
    ALLOCATED,
    CANCEL,
    ETA_CHANGED,
    LINE_WORKFLOW,
    ORDER_CHANGED,
    ORDER_SHIPPED,
    RELEASE_MOVED,
    SHIP_BEFORE_RELEASE,
    STATUS,
    TAKE_SUBSTITUTE,
    UPDATE_PAYMENT,
    line_key,
)
from domain.contract.stock import RECEIPT_PREFIX
from domain.line.book import LineBook
from domain.line.choices import AcceptOffer, AgreeToWait, Offer, TakeSubstitute
from domain.line.effects import CancelRequest, CancelResult
from domain.line.input import EtaUpdate, LineInput, ReleaseMoved, ShipBeforeRelease
from domain.line.messages import MessageKind
from domain.line.payment import NewPaymentMethod, PaymentView
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.line.timeline import Step
from domain.links import LinkAction
from domain.orders import OrderChange, OrderShipped
from domain.stock import AllocationNotice
from workflows.calls import LOCAL_FIRST_PATCH
from workflows.line import choices, life, moment, order, payment, versions
from workflows.line.run import ETA_PATCH, LineRun

ONE_UPSERT_PATCH = "one-upsert-per-signal"
"""An allocation from a receipt shows the line's new state and the receipt in one upsert; runs
that took stock before this code replay them as two."""

ONE_UPSERT_PER_TASK_PATCH = "one-upsert-per-task"
"""An allocation the line acts on at once is shown with what the line shows after acting (its
shipment's state), in one upsert; runs that took stock before this code replay two."""


def _receipt_id(source: str) -> str | None:
    """The receipt an allocation's stock came from; None for catalog stock or units another
    line released."""
    if not source.startswith(RECEIPT_PREFIX):
        return None
    return source.removeprefix(RECEIPT_PREFIX).split(":", 1)[-1]


def hold_until(line: LineInput) -> datetime | None:
    """A preorder's stock waits for its release, unless the SKU ships before it."""
    preorder = line.preorder
    if preorder is None or preorder.ship_before_release:
        return None
    return preorder.release_at


QUIET_RELEASE_PATCH = "preorder-release-same-ship-date"
"""A release moved without moving the line's ship date: the stock waits for the new release,
and no message goes out."""

CANCEL_ROLES = frozenset({"customer", "order_system", "ops"})
"""Who may ask a line to cancel through the `cancel` Update; `policy` cancels come only from
the line's own deadlines."""


@workflow.defn(name=LINE_WORKFLOW.name)
class BackorderLineWorkflow:
    """Carries one backordered line until it has shipped in full or been cancelled and refunded.

    It lives by the policy snapshot in its input: the delay-option notices of the law, the
    escalation ladder's offers, and the marketplace's auto-cancel (`domain.line.timeline`), each a
    durable timer that fires once. Its state is one `LineBook` (`domain.line.book`); its steps
    are in `workflows.line.life` (queue, ship, cancel, deadlines), `.choices` (offers,
    substitutes) and `.order` (ship-complete orders).

    Signals (a payload the line cannot use is dropped, logged and shown in its details):
        allocated(AllocationNotice): stock was allocated to this line in the store. Counted once
            per allocation id, so the at-least-once fan-out of receipts is safe.
        eta_changed(EtaUpdate): the expected ship date moved; a real change of date tells the
            customer once, and a date past the promise starts the delay-notice rules.
        order_shipped(OrderShipped): the line's ship-complete order left; the line records its
            part of that shipment.
        order_changed(OrderChange): another line of its ship-complete order was cancelled; the
            customer is told whether this one still waits for the rest or now ships alone.
        release_moved(ReleaseMoved): a preorder's release moved later; the customer is told
            once (the law's delay notice, counted from the old date) and stock waits for the
            new date.
        ship_before_release(ShipBeforeRelease): the preorder's SKU now ships before its
            release: held stock ships now, later stock as it arrives.
    Updates (each refused by its validator, changing nothing, when it cannot apply):
        agree_to_wait(AgreeToWait) -> LineStatus: the customer consents to the delay.
        accept_offer(AcceptOffer) -> Offer: the customer takes a goodwill offer (which is also
            consent to wait). Refused, with a reason the customer can read, for an unknown,
            already used, withdrawn or expired offer, or a line already final.
        take_substitute(TakeSubstitute) -> LineStatus: move the line to an in-stock substitute
            from the catalog; its held units go back to the old SKU's queue. Refused when the
            SKU is not a substitute or not in stock for what the line still needs.
        update_payment(NewPaymentMethod) -> PaymentView: another payment method after a declined
            renewal of the hold; refused (PaymentDeclined) when the processor declines it too.
        cancel(CancelRequest) -> CancelResult: cancel whatever has not shipped, give held stock
            to the next lines in the queue, refund in full. Refused once the line is final, and
            for a role that may not cancel; fails with AlreadyShipped when the last units
            shipped while it waited.
    Queries:
        status() -> LineStatus: the line as this workflow sees it.
    """

    @workflow.init
    def __init__(self, line: LineInput) -> None:
        book = (
            line.carried.resumed(line.request)
            if line.carried is not None
            else LineBook.open(line.request, line.ship_by, line.payment, hold_until(line))
        )
        key = line_key(line.request.order_id, line.request.line_id)
        shown = book.payment.state.value if book.payment is not None else None
        self._line = LineRun(line=line, book=book, key=key, shown_payment=shown)
        self._wake = False
        """Something arrived that may change what to do next."""
        self.release: str | None = None
        """The release the run follows (`versions.begin`, first thing in `run`); until then,
        and for runs that began before any release, changes are asked by their markers."""

    @workflow.run
    async def run(self, line: LineInput) -> LineStatus:
        run = self._line
        book = run.book
        self.release = versions.begin(line.release)
        run.local = versions.patched(LOCAL_FIRST_PATCH)
        if line.carried is None:
            await life.begin(run)
        else:
            run.show_details()  # a new run starts with none
        while not book.state.is_final:
            if book.release_news:
                book.release_news = False
                if versions.patched("preorder-release-moves") and (
                    # A move that kept the ship date tells no one; runs of earlier code told.
                    book.release_date_moved or not versions.patched(QUIET_RELEASE_PATCH)
                ):
                    await life.tell_release_moved(run)
                continue
            if book.eta_news and moment.quiet_over(run):
                book.eta_news = False
                if versions.patched(ETA_PATCH):
                    await moment.tell_eta(run, f"eta:{book.eta_changes}")
                    continue
                # A notice still waits for the customer's consent (one that gave no date, most
                # often): the new date does not change that, and the update says so.
                answer_by = book.timeline.deadline
                if answer_by is not None and answer_by <= workflow.now():
                    answer_by = None  # its cancel is due now: no deadline already gone is named
                asked = (
                    [] if answer_by is None else [run.link(LinkAction.WAIT, expires_at=answer_by)]
                )
                await run.send(
                    MessageKind.ETA_UPDATE,
                    f"eta:{book.eta_changes}",
                    links=[run.link(LinkAction.CANCEL), *asked],
                    deadline=answer_by,
                )
                if book.timeline.quiet_until is not None:
                    moment.quiet(run, workflow.now())
                continue
            if book.order_news:
                await order.tell_change(run, book.order_news.pop(0))
                continue
            if life.history_full(run):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._news_due():
                    continue  # news came in while handlers finished: tell it first
                if not book.has_work() and not book.state.is_final:
                    life.continue_as_new(run)
            step = run.show_next_step()
            if await self._wait_for_news(step):
                if self._news_due():
                    continue  # tell the customer first, then act
                await life.act(run)
            elif step is not None:
                await life.take_step(run, step)
        run.show_held()
        while book.order_news and book.state is LineState.SHIPPED:
            await order.tell_change(run, book.order_news.pop(0))
        # Let a cancel that arrived during the last shipment read its answer before we finish.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await life.ask_later(run)
        # An Update that came in while the survey was being started (a customer pressing a
        # button as the line ships) gets its answer too: the run ends in the same activation
        # as this wait, so none can come in after it. (A wait already satisfied adds no command.)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def _news_due(self) -> bool:
        """News to tell the customer now (a new date held for the quiet period is not)."""
        book = self._line.book
        return bool(book.order_news) or (book.eta_news and moment.quiet_over(self._line))

    async def _wait_for_news(self, step: Step | None) -> bool:
        """Wait for something to do; False when the step's time came first."""
        self._line.show_held()
        self._wake = False

        def news() -> bool:
            return self._line.book.has_work() or self._wake

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

    def payload_refused(self, signal: str, reason: str) -> None:
        """A signal's payload could not be used (`domain.contract.Signal.handler`)."""
        self._line.book.refuse_payload(signal, reason)
        self._line.show_details()

    # ---- signals ------------------------------------------------------------------------------

    @ALLOCATED.handler
    def allocated(self, notice: AllocationNotice) -> None:
        book = self._line.book
        refusal = book.allocation_refusal(notice, self._line.key)
        if refusal is not None:
            self.payload_refused(ALLOCATED.name, refusal)
            return
        if not book.take(notice):
            return
        receipt_id = _receipt_id(notice.source)
        if receipt_id is not None and versions.patched(ONE_UPSERT_PATCH):
            # The new state and the receipt in one upsert: one event, one visibility write. A
            # line that acts on its stock at once (it ships, mostly) holds them for what it
            # shows then, in the same workflow task.
            shown = contract.SA_RECEIPT_ID.value_set(receipt_id)
            hold = book.has_work() and versions.patched(ONE_UPSERT_PER_TASK_PATCH)
            if book.state is LineState.RECEIVED:
                self._line.show(shown, hold=hold)
            else:
                self._line.refresh_state(shown, hold=hold)
            return
        if book.state is not LineState.RECEIVED:  # the first state comes from recording it
            self._line.refresh_state()
        if receipt_id is not None:
            self._show_receipt(receipt_id)

    def _show_receipt(self, receipt_id: str) -> None:
        """Ops find the lines a receipt gave stock to by `BackorderReceiptId` (the latest one).

        A command added on an existing path, so it sits behind `workflow.patched`: a line
        that got a receipt's stock before this code has no patch marker in its history and
        replays without the upsert (unpatched, such a history fails to replay: TMPRL1100).
        """
        if versions.patched("receipt-search-attribute"):
            self._line.show(contract.SA_RECEIPT_ID.value_set(receipt_id))

    @ETA_CHANGED.handler
    def eta_changed(self, update: EtaUpdate) -> None:
        if self._line.book.state.is_final:
            return
        self._line.book.record_eta(update.eta)
        self._wake = True

    @RELEASE_MOVED.handler
    def release_moved(self, moved: ReleaseMoved) -> None:
        if self._line.line.preorder is None:
            self.payload_refused(RELEASE_MOVED.name, "the line is not a preorder")
            return
        if self._line.book.move_release(moved.release_at, moved.eta):
            self._wake = True

    @SHIP_BEFORE_RELEASE.handler
    def ship_before_release(self, change: ShipBeforeRelease) -> None:
        if self._line.line.preorder is None or change.sku != self._line.request.sku:
            self.payload_refused(SHIP_BEFORE_RELEASE.name, "the line is not a preorder of it")
            return
        if self._line.book.ship_before_release():
            self._wake = True

    @ORDER_SHIPPED.handler
    def order_shipped(self, shipped: OrderShipped) -> None:
        if not self._line.book.with_order:
            self.payload_refused(ORDER_SHIPPED.name, "the line ships on its own")
            return
        self._line.book.order_shipment = shipped.shipment

    @ORDER_CHANGED.handler
    def order_changed(self, change: OrderChange) -> None:
        request = self._line.request
        if change.cancelled_line not in request.order_lines or change.cancelled_line == (
            request.line_id
        ):
            self.payload_refused(
                ORDER_CHANGED.name, f"{change.cancelled_line} is not another line of its order"
            )
            return
        if not self._line.book.state.is_final:
            self._line.book.order_news.append(change)
            self._wake = True

    # ---- updates --------------------------------------------------------------------------

    @AGREE_TO_WAIT.handler
    def agree_to_wait(self, request: AgreeToWait) -> LineStatus:
        self._line.book.timeline.agree_to_wait()
        self._wake = True
        return self.status()

    @agree_to_wait.validator
    def _validate_wait(self, request: AgreeToWait) -> None:
        self._line.refuse_if_final()

    @ACCEPT_OFFER.handler
    async def accept_offer(self, request: AcceptOffer) -> Offer:
        self._wake = True
        return await choices.accept_offer(self._line, request.offer_id)

    @accept_offer.validator
    def _validate_offer(self, request: AcceptOffer) -> None:
        self._line.refuse_if_final()
        choices.offer_refusal(self._line, request.offer_id)

    @TAKE_SUBSTITUTE.handler
    async def take_substitute(self, request: TakeSubstitute) -> LineStatus:
        detail = await choices.take_substitute(self._line, request.sku)
        self._wake = True
        await self._line.send(
            MessageKind.OFFER_ACCEPTED, f"substitute:{request.sku}", detail=detail
        )
        return self.status()

    @take_substitute.validator
    def _validate_substitute(self, request: TakeSubstitute) -> None:
        self._line.refuse_if_final()
        if request.sku == self._line.request.sku:
            raise ApplicationError(
                "This is already the item you are waiting for.",
                type=contract.ERROR_SUBSTITUTE_REFUSED,
            )

    @UPDATE_PAYMENT.handler
    async def update_payment(self, request: NewPaymentMethod) -> PaymentView:
        async with self._line.lock:
            self._line.refuse_if_final()
            view = await payment.new_method(self._line, request.reference)
        self._wake = True
        return view

    @update_payment.validator
    def _validate_payment(self, request: NewPaymentMethod) -> None:
        self._line.refuse_if_final()
        if self._line.book.payment is None:
            raise ApplicationError(
                "This item was paid in full at order.", type=contract.ERROR_INVALID_REQUEST
            )

    @CANCEL.handler
    async def cancel(self, request: CancelRequest) -> CancelResult:
        book = self._line.book
        book.request_cancel(request)
        await workflow.wait_condition(
            lambda: book.cancel_result is not None or book.state is LineState.SHIPPED
        )
        if book.cancel_result is None:
            raise ApplicationError(
                "the line shipped in full before the cancel could take effect",
                type=contract.ERROR_ALREADY_SHIPPED,
            )
        return book.cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._line.refuse_if_final()
        if request.requested_by not in CANCEL_ROLES:
            raise ApplicationError(
                f"requested_by must be one of {', '.join(sorted(CANCEL_ROLES))}",
                type=contract.ERROR_INVALID_REQUEST,
            )

    @STATUS.handler
    def status(self) -> LineStatus:
        run = self._line
        return run.book.status(
            workflow_id=run.key,
            request=run.request,
            ship_by=run.line.ship_by,
            step=run.next,
            priority=run.line.priority,
        )
