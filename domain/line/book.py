"""The book of one backordered line: what it holds, shipped, was told and promised.

`LineBook` is the whole state of a line's workflow, and its transitions are the rules of a
line's life, written as pure methods so that they can be tested without Temporal
(`tests/test_line_book.py`), like `Timeline`:

- an allocation counts once, by its id, and never once the line is final;
- what a line holds is what was allocated to it, less what it shipped and gave back;
- what ships now: whatever is held, except that a `complete` line holds until it has all its
  units, and a line of a ship-complete order ships only with its order;
- a cancel refunds, in full, every unit that did not ship, less what a goodwill refund already
  paid back.

The workflow (`workflows.line`) is named steps over this book; continue-as-new carries it whole.
A book carried by an earlier release (without the fields added since) reads with their defaults.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from domain.line.choices import Offer, OfferStatus, SubstituteResult
from domain.line.effects import (
    CancelRequest,
    CancelResult,
    RefundRecord,
    ReleaseResult,
    ShipmentRecord,
)
from domain.line.messages import MessageRecord
from domain.line.payment import Payment, PaymentView
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.line.timeline import CANCELS, Step, StepKind, Timeline
from domain.orders import OrderChange
from domain.policy import LinePolicy
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice
from domain.values import ShipPolicy

REFUSED_KEPT = 5
"""Refused payloads a line remembers (and shows ops): enough to see a misbehaving sender."""


class LineBook(BaseModel):
    """Everything a line has done and promised; changed only through the methods below."""

    quantity: int = 0
    """Units ordered (fixed at start)."""
    ship_policy: ShipPolicy = ShipPolicy.PARTIAL
    runs: int = 0
    """Runs of the workflow before this one (continue-as-new)."""
    state: LineState = LineState.RECEIVED
    allocated: int = 0
    """Every unit ever allocated to the line, shipped or not."""
    shipped: int = 0
    released: int = 0
    """Units given back when the line moved to a substitute."""
    seen_allocations: list[int] = Field(default_factory=list)
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    refunds: list[RefundRecord] = Field(default_factory=list)
    timeline: Timeline
    offers: list[Offer] = Field(default_factory=list)
    expedited: bool = False
    """A free-expedited-shipping offer was taken: the next shipments go expedited."""
    eta_changes: int = 0
    eta_news: bool = False
    """The ETA moved and the customer has not been told yet."""
    with_order: bool = False
    """Held for the other lines of its ship-complete order, until released."""
    reported_ready: bool = False
    order_shipment: ShipmentRecord | None = None
    """The ship-complete order's shipment, once the order left: the line records its part."""
    order_news: list[OrderChange] = Field(default_factory=list)
    """Other lines of the order cancelled, that the customer has not been told of yet."""
    cancel_request: CancelRequest | None = None
    cancel_result: CancelResult | None = None
    refused: list[str] = Field(default_factory=list)
    """The last payloads the line could not use (sent around the API's validation)."""
    payment: Payment | None = None
    """The line's money, when the order system gave payment terms (`domain.line.payment`)."""
    hold_until: datetime | None = None
    """A preorder's release date: stock that arrives before it is held, not shipped."""
    release_news: bool = False
    """The preorder's release moved later and the customer has not been told yet."""
    release_moved_to: datetime | None = None
    """The latest release date the line was told of (a repeated signal tells nothing new)."""
    release_date_moved: bool = False
    """The last release move changed the line's ship date: only then is it news for the
    customer (a release moved over a weekend may keep the business-day ship date)."""

    @classmethod
    def open(
        cls,
        request: BackorderRequest,
        ship_by: datetime,
        payment: Payment | None = None,
        hold_until: datetime | None = None,
    ) -> LineBook:
        """The book of a line that has just started."""
        return cls(
            hold_until=hold_until,
            quantity=request.quantity,
            ship_policy=request.ship_policy,
            timeline=Timeline.start(ship_by),
            with_order=request.ships_with_order,
            payment=payment.model_copy(deep=True) if payment is not None else None,
        )

    def resumed(self, request: BackorderRequest) -> LineBook:
        """This book carried into a new run; books of earlier releases lack the terms."""
        return self.model_copy(
            update={"quantity": request.quantity, "ship_policy": request.ship_policy}
        )

    def carried(self) -> LineBook:
        """The book to hand to the next run."""
        return self.model_copy(update={"runs": self.runs + 1}, deep=True)

    # ---- quantities ----------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Units allocated to the line, of its current SKU, not yet shipped."""
        return self.allocated - self.released - self.shipped

    @property
    def fully_allocated(self) -> bool:
        return self.allocated - self.released >= self.quantity

    @property
    def complete(self) -> bool:
        """Every unit is here: held or already shipped."""
        return self.held + self.shipped >= self.quantity

    def shippable(self) -> int:
        """Units to ship now: whatever is held, or nothing until complete for ship-complete,
        and nothing before a preorder's release."""
        if self.hold_until is not None:
            return 0
        if self.with_order:
            return self.held if self.order_shipment is not None else 0
        if self.ship_policy is ShipPolicy.COMPLETE and not self.complete:
            return 0
        return self.held

    def order_ready_due(self) -> bool:
        """A line of a ship-complete order has all its units and has not said so yet (a
        preorder: once released, so that its order does not leave before it)."""
        return (
            self.with_order
            and self.complete
            and not self.reported_ready
            and self.hold_until is None
        )

    def has_work(self) -> bool:
        """Something to do now: a cancel, units to ship, or the order to tell it is whole."""
        return self.cancel_request is not None or self.shippable() > 0 or self.order_ready_due()

    def has_news(self) -> bool:
        """Something to tell the customer before acting."""
        return self.eta_news or bool(self.order_news) or self.release_news

    def next_step(self, policy: LinePolicy, now: datetime | None = None) -> Step | None:
        """The next deadline: the timeline's promises, or the payment's (renew the hold, or
        cancel when no payment method came after a declined renewal). With `now`, an ETA at
        or before it is no date (`Timeline.dated`)."""
        steps = [self.timeline.next_step(policy, fully_allocated=self.fully_allocated, now=now)]
        payment = self.payment
        if payment is not None and not self.state.is_final:
            renew_at = payment.renewal_due_at(policy.days(policy.payment.reauthorize_lead_days))
            if renew_at is not None:
                steps.append(Step(kind=StepKind.RENEW_HOLD, at=renew_at))
            if payment.needs_method_since is not None:
                deadline = payment.needs_method_since + policy.days(
                    policy.payment.update_grace_days
                )
                steps.append(Step(kind=StepKind.CANCEL_NO_PAYMENT, at=deadline))
        if self.hold_until is not None and not self.state.is_final:
            steps.append(Step(kind=StepKind.SHIP_AT_RELEASE, at=self.hold_until))
        quiet_until = self.timeline.quiet_until
        if self.eta_news and quiet_until is not None and not self.state.is_final:
            steps.append(Step(kind=StepKind.ETA_UPDATE, at=quiet_until))
        due = [step for step in steps if step is not None]
        return min(due, key=lambda step: step.at, default=None)

    def cancel_due(self, policy: LinePolicy, now: datetime) -> bool:
        """The line is to be cancelled at `now` (asked to, or a deadline of its promises or its
        payment is gone): news such as a new date is not worth a message before the cancel."""
        if self.cancel_request is not None:
            return True
        if self.state.is_final:
            return False
        step = self.next_step(policy, now)
        if step is not None and step.kind in CANCELS and step.at <= now:
            return True
        return not self.fully_allocated and self.timeline.cancel_due(policy, now)

    def shipped_value(self, unit_price: str) -> Decimal:
        """What the units shipped so far are worth at the line's unit price."""
        return Decimal(unit_price) * self.shipped

    # ---- transitions -----------------------------------------------------------------------

    def allocation_refusal(self, notice: AllocationNotice, key: str) -> str | None:
        """Why this line cannot count `notice`, or None: the store allocates to one line at
        least one unit and never more than it still needs, so anything else was not sent by
        the store."""
        if notice.line_key != key:
            return f"allocation {notice.allocation_id} is for {notice.line_key}"
        if notice.quantity < 1:
            return f"allocation {notice.allocation_id} of {notice.quantity} units"
        needed = self.quantity - (self.allocated - self.released)
        if notice.allocation_id not in self.seen_allocations and notice.quantity > needed:
            return f"allocation {notice.allocation_id} of {notice.quantity} units, {needed} needed"
        return None

    def take(self, notice: AllocationNotice) -> bool:
        """Count an allocation once; False when already counted or the line is final."""
        if notice.allocation_id in self.seen_allocations or self.state.is_final:
            return False
        self.seen_allocations.append(notice.allocation_id)
        self.allocated += notice.quantity
        return True

    def state_now(self) -> LineState:
        """The state the quantities say (a cancelled line stays cancelled)."""
        if self.state is LineState.CANCELLED:
            return self.state
        return LineState.of(self.quantity, self.allocated - self.released, self.shipped)

    def set_state(self, state: LineState) -> bool:
        """True when the state changed."""
        if state == self.state:
            return False
        self.state = state
        return True

    def record_shipment(self, shipment: ShipmentRecord) -> bool:
        """A shipment left; True when it was the last of the line's units."""
        self.shipments.append(shipment)
        self.shipped += shipment.quantity
        return self.shipped >= self.quantity

    def next_shipment(self) -> int:
        """The sequence number of the next shipment (part of its idempotency key)."""
        return len(self.shipments) + 1

    def record_eta(self, eta: datetime | None) -> bool:
        """A new ETA; True (and news for the customer) when it really moved."""
        if self.state.is_final or not self.timeline.set_eta(eta):
            return False
        self.eta_changes += 1
        self.eta_news = True
        return True

    def move_release(self, release_at: datetime, eta: datetime) -> bool:
        """The preorder's release moved later: stock waits for the new date, and the customer
        is told once (`release_news`). False when the line is final or already knew."""
        if self.state.is_final or release_at == self.release_moved_to:
            return False
        self.release_moved_to = release_at
        if self.hold_until is not None:
            self.hold_until = release_at
        self.release_date_moved = self.timeline.set_eta(eta)
        self.release_news = True
        return True

    def ship_before_release(self) -> bool:
        """The SKU now ships before its release: nothing is held any more. False when the line
        is final or held nothing."""
        if self.state.is_final or self.hold_until is None:
            return False
        self.hold_until = None
        return True

    def request_cancel(self, request: CancelRequest) -> None:
        """The first cancel asked wins; the line acts on it as soon as it can."""
        if self.cancel_request is None:
            self.cancel_request = request

    def record_release(self, release: ReleaseResult) -> None:
        """The store cancelled the line; it is the truth about what was allocated (it saw
        allocations whose signals may still be on their way). The caller then sets the state
        to cancelled (`set_state`), which ops see change."""
        self.allocated = release.allocated_quantity

    def refund_owed(self, unit_price: str, units: int) -> Decimal:
        """In full for `units` that did not ship, less what goodwill refunds paid back."""
        already = sum((Decimal(refund.amount) for refund in self.refunds), Decimal(0))
        return Decimal(unit_price) * units - already

    def record_substitute(self, moved: SubstituteResult) -> None:
        self.released += moved.released_quantity
        self.allocated += moved.quantity

    def find_offer(self, offer_id: str) -> Offer | None:
        return next((offer for offer in self.offers if offer.offer_id == offer_id), None)

    def accept_offer(self, offer: Offer) -> None:
        """The customer takes `offer`: the other offers of the same apology are withdrawn, and
        taking one is consent to wait."""
        offer.status = OfferStatus.ACCEPTED
        for sibling in self.offers:
            if sibling.rung == offer.rung and sibling.status is OfferStatus.OPEN:
                sibling.status = OfferStatus.WITHDRAWN
        self.timeline.agree_to_wait()

    def refuse_payload(self, signal: str, reason: str) -> None:
        self.refused = [*self.refused, f"{signal}: {reason}"][-REFUSED_KEPT:]

    # ---- views -----------------------------------------------------------------------------

    def status(
        self,
        *,
        workflow_id: str,
        request: BackorderRequest,
        ship_by: datetime,
        step: Step | None,
        priority: int = 0,
    ) -> LineStatus:
        """The line as the `status` query and the API show it."""
        ahead = None if self.state.is_final else step
        return LineStatus(
            order_id=request.order_id,
            line_id=request.line_id,
            workflow_id=workflow_id,
            sku=request.sku,
            quantity=request.quantity,
            unit_price=request.unit_price,
            currency=request.currency,
            channel=request.channel,
            customer=request.customer,
            ordered_at=request.ordered_at,
            ship_by=ship_by,
            ship_policy=request.ship_policy,
            state=self.state,
            allocated_quantity=self.allocated,
            shipped_quantity=self.shipped,
            messages=list(self.messages),
            shipments=list(self.shipments),
            refunds=list(self.refunds),
            cancel_reason=self.cancel_request.reason if self.cancel_request else None,
            cancelled_by=self.cancel_request.requested_by if self.cancel_request else None,
            eta=self.timeline.eta,
            escalation_level=self.timeline.escalation_level,
            next_deadline=ahead.at if ahead else None,
            next_action=ahead.describe() if ahead else None,
            consent=self.timeline.consent.value,
            offers=list(self.offers),
            payment=PaymentView.of(self.payment) if self.payment is not None else None,
            priority_class=priority,
        )

    def details(self, *, summary: str, step: Step | None) -> str:
        """What ops see on the workflow in the Temporal UI (markdown): state, ETA, the next
        deadline, the last message, and payloads the line refused."""
        parts = []
        if self.runs:
            # A continued run has no static summary (continue-as-new does not carry it).
            parts.append(f"{summary} (run {self.runs + 1}: continued as new)")
        parts += [
            f"**{self.state.value}**: {self.allocated} allocated, {self.shipped} shipped "
            f"of {self.quantity}",
            f"ETA: {self.timeline.eta:%d %b %Y}" if self.timeline.eta else "ETA: no date",
        ]
        if step is not None and not self.state.is_final:
            parts.append(f"next: {step.describe()} at {step.at:%d %b %Y %H:%M} UTC")
        if self.messages:
            parts.append(f"last message: {self.messages[-1].kind.value}")
        if self.payment is not None:
            payment = self.payment
            hold = f", hold until {payment.expires_at:%d %b %Y %H:%M} UTC" if payment.hold else ""
            parts.append(
                f"payment: {payment.state.value}, {payment.captured} of {payment.amount} "
                f"{payment.currency} captured{hold}"
            )
        if self.refused:
            parts.append("refused: " + "; ".join(self.refused))
        return "\n\n".join(parts)
