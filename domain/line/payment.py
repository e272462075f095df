"""The money of one line: what was authorized, captured, voided and refunded, and the rules.

A line is paid one of three ways, told by the order system at start (`PaymentTerms`):

- **prepaid** (the default, and every line without payment terms): charged in full at order;
  a cancel refunds the units that did not ship.
- **authorized only**: a hold at order, nothing charged. Each shipment captures the value of
  the units it carries; a cancel voids the rest of the hold.
- **deposit**: part charged at order, the rest held. Shipments capture only what the deposit
  does not already cover; a cancel voids the hold and refunds the deposit beyond what shipped.

Holds lapse (about 7 days for a customer-initiated card payment). A line with units still to
ship renews its hold `reauthorize_lead_days` before it lapses: a merchant-initiated
authorization of what remains to capture, then a void of the old hold. A declined renewal asks
the customer for another payment method; without one within `update_grace_days`, the line is
cancelled with nothing charged.

All amounts are decimals in the currency's minor units (`places`: 2 for USD, 0 for JPY), so
that every capture, void and refund is exact to the cent and captured minus refunded is, for
every line, the value of what shipped (DESIGN rule 8).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from domain.requests import BackorderRequest
from domain.values import MINOR_UNITS, text

ZERO = Decimal(0)


def exact(amount: Decimal, places: int) -> Decimal:
    """`amount` in the currency's minor units (half up: a price times a whole quantity is
    always exact; a percentage discount rounds to the nearest cent)."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


class PaymentState(StrEnum):
    PAID = "paid"
    """Charged in full at order (nothing held)."""
    AUTHORIZED = "authorized"
    """Held, nothing captured beyond what was taken at order."""
    PARTIALLY_CAPTURED = "partially_captured"
    CAPTURED = "captured"
    """Everything due was captured (the line shipped)."""
    NEEDS_NEW_METHOD = "needs_new_method"
    """A renewal was declined: the customer was asked for another payment method."""
    VOIDED = "voided"
    """Cancelled before anything was charged: the hold was released."""
    REFUNDED = "refunded"
    """Cancelled after a charge: what did not ship was refunded."""


class HoldState(StrEnum):
    OPEN = "open"
    SPENT = "spent"
    """Fully captured."""
    VOIDED = "voided"


class Hold(BaseModel):
    """One authorization at the payment processor."""

    reference: str
    amount: str
    """Authorized."""
    captured: str = "0"
    """Captured against this hold."""
    authorized_at: datetime
    expires_at: datetime
    state: HoldState = HoldState.OPEN
    number: int = 1
    """1 for the hold given at order, then 2, 3... for renewals: part of their idempotency keys."""

    @property
    def available(self) -> Decimal:
        """What may still be captured against it."""
        if self.state is not HoldState.OPEN:
            return ZERO
        return Decimal(self.amount) - Decimal(self.captured)


class Capture(BaseModel):
    shipment: int
    """The shipment's sequence number: one capture per shipment."""
    hold: int
    amount: str
    capture_id: str


class Payment(BaseModel):
    """A line's money. Changed only through the methods below."""

    method: str
    """The payment method's reference at the processor (a vaulted card), which renewals
    authorize again; a new one when the customer gives another."""
    currency: str
    places: int
    """Minor units of the currency."""
    amount: str
    """What the line cost at order, in all."""
    discount: str = "0"
    """Goodwill and cheaper substitutes: taken off what is still to be charged, or refunded
    when already charged. The customer keeps it whatever happens to the line."""
    captured: str = "0"
    """Charged so far, what was taken at order included."""
    voided: str = "0"
    """Held and released without being charged: what the customer was never charged."""
    refunded: str = "0"
    holds: list[Hold] = Field(default_factory=list)
    captures: list[Capture] = Field(default_factory=list)
    authorizations: int = 0
    """Authorizations asked of the processor, declined ones included: numbers their keys."""
    renewals: int = 0
    declines: int = 0
    needs_method_since: datetime | None = None
    """When a renewal was declined (the grace period runs from here); None once resolved."""
    settled: bool = False
    """The line was cancelled and its money settled (the hold voided, the rest refunded)."""

    # ---- amounts -------------------------------------------------------------------------

    def money(self, amount: Decimal) -> str:
        return f"{exact(amount, self.places)}"

    @property
    def hold(self) -> Hold | None:
        """The open hold, if any."""
        return next((hold for hold in reversed(self.holds) if hold.state is HoldState.OPEN), None)

    @property
    def due(self) -> Decimal:
        """What the line costs the customer now: its price less its discounts."""
        return Decimal(self.amount) - Decimal(self.discount)

    @property
    def outstanding(self) -> Decimal:
        """What is still to be captured before the line is fully paid."""
        return max(ZERO, self.due - self.kept)

    @property
    def kept(self) -> Decimal:
        """Charged and not refunded: what the customer paid in the end."""
        return Decimal(self.captured) - Decimal(self.refunded)

    def capture_due(self, shipped_value: Decimal) -> Decimal:
        """What a shipment that brings the value shipped to `shipped_value` must capture: the
        value shipped less what was already charged and kept, never more than the line costs
        now nor more than the open hold allows."""
        target = min(exact(shipped_value, self.places), self.due)
        wanted = max(ZERO, target - self.kept)
        hold = self.hold
        return min(wanted, hold.available if hold is not None else ZERO)

    def refund_due(self, shipped_value: Decimal) -> Decimal:
        """On a cancel: what was charged beyond the value of what shipped, less the discounts
        the customer keeps."""
        owed = max(ZERO, exact(shipped_value, self.places) - Decimal(self.discount))
        return max(ZERO, self.kept - owed)

    # ---- transitions -----------------------------------------------------------------------

    def record_capture(self, shipment: int, amount: Decimal, capture_id: str) -> None:
        hold = self.hold
        assert hold is not None, "a capture needs an open hold"
        hold.captured = self.money(Decimal(hold.captured) + amount)
        self.captured = self.money(Decimal(self.captured) + amount)
        self.captures.append(
            Capture(
                shipment=shipment,
                hold=hold.number,
                amount=self.money(amount),
                capture_id=capture_id,
            )
        )
        if hold.available <= ZERO:
            hold.state = HoldState.SPENT

    def record_void(self, hold: Hold, *, replaced: bool) -> Decimal:
        """The hold was released; returns the amount that was still held. `voided` counts what
        was given up (a cancel), not a hold replaced by its renewal."""
        released = hold.available
        hold.state = HoldState.VOIDED
        if not replaced:
            self.voided = self.money(Decimal(self.voided) + released)
        return released

    def record_refund(self, amount: Decimal) -> None:
        self.refunded = self.money(Decimal(self.refunded) + amount)

    def record_renewal(
        self, reference: str, amount: Decimal, now: datetime, expires_at: datetime
    ) -> Hold:
        """A new hold for what remains; the caller then voids the old one."""
        hold = Hold(
            reference=reference,
            amount=self.money(amount),
            authorized_at=now,
            expires_at=expires_at,
            number=len(self.holds) + 1,
        )
        self.holds.append(hold)
        self.renewals += 1
        self.needs_method_since = None
        return hold

    def next_authorization(self) -> int:
        """The number of the next authorization asked (its idempotency key's last part)."""
        self.authorizations += 1
        return self.authorizations

    def record_decline(self, now: datetime) -> None:
        self.declines += 1
        if self.needs_method_since is None:
            self.needs_method_since = now

    def give_discount(self, by: Decimal) -> Decimal:
        """A goodwill discount or a cheaper substitute, taken off what is still to be charged;
        returns what must be refunded now because it was already charged."""
        self.discount = self.money(Decimal(self.discount) + by)
        return max(ZERO, self.kept - self.due)

    # ---- views ---------------------------------------------------------------------------

    @property
    def state(self) -> PaymentState:
        captured, refunded = Decimal(self.captured), Decimal(self.refunded)
        if self.settled:
            if captured - refunded <= ZERO:
                return PaymentState.REFUNDED if refunded > ZERO else PaymentState.VOIDED
            if refunded > ZERO:
                return PaymentState.REFUNDED
            return PaymentState.CAPTURED if self.captures else PaymentState.PAID
        if self.needs_method_since is not None:
            return PaymentState.NEEDS_NEW_METHOD
        if not self.holds:
            return PaymentState.PAID
        if self.kept >= self.due:
            return PaymentState.CAPTURED
        if self.captures:
            return PaymentState.PARTIALLY_CAPTURED
        return PaymentState.AUTHORIZED

    @property
    def expires_at(self) -> datetime | None:
        hold = self.hold
        return hold.expires_at if hold is not None else None

    def renewal_due_at(self, lead: timedelta) -> datetime | None:
        """When the open hold must be renewed: `lead` before it lapses, while something is
        still to capture; None when nothing is held, nothing is due, or the customer was
        asked for another method."""
        hold = self.hold
        if hold is None or self.outstanding <= ZERO or self.needs_method_since is not None:
            return None
        return hold.expires_at - lead


# ---- payloads ----------------------------------------------------------------------------


def open_payment(
    *,
    method: str,
    currency: str,
    places: int,
    amount: Decimal,
    captured: Decimal,
    authorized_at: datetime,
    expires_at: datetime,
) -> Payment:
    """A line's money at start: `captured` taken at order, the rest held until `expires_at`
    (nothing held when everything was captured)."""
    payment = Payment(
        method=method,
        currency=currency,
        places=places,
        amount=f"{exact(amount, places)}",
        captured=f"{exact(captured, places)}",
        discount=f"{exact(ZERO, places)}",
        voided=f"{exact(ZERO, places)}",
        refunded=f"{exact(ZERO, places)}",
    )
    held = exact(amount - captured, places)
    if held > ZERO:
        payment.holds.append(
            Hold(
                reference=method,
                amount=f"{held}",
                authorized_at=authorized_at,
                expires_at=expires_at,
            )
        )
    return payment


class AuthorizeInput(BaseModel):
    """A new hold on the customer's payment method (merchant-initiated for a renewal)."""

    line_key: str
    method: str
    amount: str
    currency: str
    expires_at: datetime
    number: int
    """The hold's number on the line: with the line, its idempotency key."""
    merchant_initiated: bool = True


class Authorization(BaseModel):
    reference: str
    """The processor's id of the new hold, which captures and the void name."""
    expires_at: datetime
    declined: bool = False
    reason: str | None = None


class CaptureInput(BaseModel):
    line_key: str
    hold: str
    """The hold's reference."""
    amount: str
    currency: str
    shipment: int
    """The shipment's sequence number: with the line, the idempotency key."""


class CaptureResult(BaseModel):
    capture_id: str
    amount: str


class VoidInput(BaseModel):
    line_key: str
    hold: str
    amount: str
    currency: str
    number: int
    reason: str
    replaced: bool = False
    """The hold is released because a renewal replaced it (not money given up)."""


class VoidResult(BaseModel):
    void_id: str


class NewPaymentMethod(BaseModel):
    """The `update_payment` Update: another payment method the customer gave (the storefront
    collected the card and sends its reference)."""

    reference: Annotated[str, text(120)]


class PaymentView(BaseModel):
    """A line's money as the API shows it."""

    reference: str
    amount: str
    captured: str
    voided: str
    refunded: str
    currency: str
    expires_at: datetime | None
    state: PaymentState

    @classmethod
    def of(cls, payment: Payment) -> PaymentView:
        hold = payment.hold
        return cls(
            reference=hold.reference if hold is not None else payment.method,
            amount=payment.amount,
            captured=payment.captured,
            voided=payment.voided,
            refunded=payment.refunded,
            currency=payment.currency,
            expires_at=payment.expires_at,
            state=payment.state,
        )


def payment_of(request: BackorderRequest, hold: timedelta) -> Payment | None:
    """The line's money at start from the order system's payment terms, defaults resolved (the
    amount is the line's total, all of it captured at order, the hold authorized at the order
    and lasting `hold`); None for a line paid in full at order that gave no terms."""
    terms = request.payment
    if terms is None:
        return None
    amount = Decimal(terms.amount) if terms.amount is not None else request.line_total()
    captured = Decimal(terms.captured_amount) if terms.captured_amount is not None else amount
    authorized_at = terms.authorized_at or request.ordered_at
    return open_payment(
        method=terms.reference,
        currency=request.currency,
        places=MINOR_UNITS[request.currency],
        amount=amount,
        captured=captured,
        authorized_at=authorized_at,
        expires_at=terms.expires_at or authorized_at + hold,
    )
