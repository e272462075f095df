"""A line as its customer sees it on the status page: in words, with the choices open now.

Pure: built from the line's status (`LineStatus`), the catalog's name for the item, the
substitutes in stock, and the clock. The API renders it (`api/templates/status.html`); what a
choice does is the line's own rule, through the same Updates as every other way in.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.line.choices import OfferStatus, SubstituteOption
from domain.line.effects import ShipmentRecord
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.line.timeline import Step, StepKind
from domain.links import LinkAction

STATE_TEXT = {
    LineState.RECEIVED: "Order received",
    LineState.WAITING: "On backorder: waiting for stock",
    LineState.PARTIALLY_ALLOCATED: "On backorder: part of it has arrived",
    LineState.ALLOCATED: "Arrived: getting ready to ship",
    LineState.PARTIALLY_SHIPPED: "Part of it has shipped",
    LineState.SHIPPED: "Shipped",
    LineState.CANCELLED: "Cancelled",
}

_NEXT_TEXT = {
    StepKind.DELAY_NOTICE: "If it has not shipped by then, we write to you about the delay and "
    "your choices.",
    StepKind.OFFER: "If it is still waiting then, we send you an offer to thank you for your "
    "patience.",
    StepKind.CHOICE_REQUEST: "If it is still waiting then, we ask you to choose what happens "
    "before the marketplace cancels the order.",
    StepKind.CANCEL_NO_CONSENT: "Unless you tell us you want to keep waiting, we cancel this "
    "item then and refund you in full.",
    StepKind.CANCEL_MARKETPLACE: "Unless it ships first, we cancel this item then and refund "
    "you in full, before the marketplace cancels the order.",
    StepKind.RENEW_HOLD: "We renew the hold on your payment method then; nothing is charged "
    "until it ships.",
    StepKind.CANCEL_NO_PAYMENT: "Unless you give us another payment method, we cancel this "
    "item then; nothing is charged.",
}
NEXT_BY_DESCRIPTION = {
    Step(kind=kind, at=datetime(2000, 1, 1)).describe(): text for kind, text in _NEXT_TEXT.items()
}
"""What the customer reads for the line's next deadline, by the status's `next_action`."""


class Certainty(StrEnum):
    SHIPPED = "shipped"
    IN_HAND = "in_hand"
    """The units are here and held for the customer."""
    SUPPLIER_DATE = "supplier_date"
    """The date comes from what our supplier told us of its delivery."""
    LATE = "late"
    """The supplier's date is after the date first promised."""
    NO_DATE = "no_date"
    CANCELLED = "cancelled"


CERTAINTY_TEXT = {
    Certainty.SHIPPED: "It is on its way.",
    Certainty.IN_HAND: "It is here and set aside for you: it ships within the day.",
    Certainty.SUPPLIER_DATE: "This date is our supplier's delivery date; it may still move, and "
    "we will tell you if it does.",
    Certainty.LATE: "This is our supplier's delivery date, later than the date we first "
    "promised you; it may still move, and we will tell you if it does.",
    Certainty.NO_DATE: "Our supplier has not given us a date yet. We will write as soon as we "
    "have one.",
    Certainty.CANCELLED: "This item will not ship.",
}


class PageChoice(BaseModel):
    """One button: the form posts `action` (and `choice`: an offer id or a substitute's SKU)."""

    action: LinkAction
    choice: str | None = None
    label: str
    detail: str | None = None


class CustomerPage(BaseModel):
    order_id: str
    line_id: str
    product: str
    quantity: int
    state: LineState
    state_text: str
    expected: datetime | None
    certainty: Certainty
    certainty_text: str
    next_at: datetime | None
    next_text: str | None
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    currency: str
    charged: str | None
    refunded: str | None
    consent: str | None
    cancel_reason: str | None
    choices: list[PageChoice] = Field(default_factory=list)


def _certainty(status: LineStatus) -> Certainty:
    if status.state is LineState.CANCELLED:
        return Certainty.CANCELLED
    if status.state is LineState.SHIPPED:
        return Certainty.SHIPPED
    if status.state is LineState.ALLOCATED:
        return Certainty.IN_HAND
    if status.eta is None:
        return Certainty.NO_DATE
    return Certainty.LATE if status.eta > status.ship_by else Certainty.SUPPLIER_DATE


def _money(status: LineStatus) -> tuple[str | None, str | None]:
    """Charged and refunded, as the customer's statement would show them."""
    refunded = sum((Decimal(refund.amount) for refund in status.refunds), Decimal(0))
    if status.payment is not None:
        return status.payment.captured, status.payment.refunded
    # Without payment terms a line is paid in full at order.
    charged = Decimal(status.unit_price) * status.quantity
    return f"{charged:.2f}", f"{refunded:.2f}"


def choices_open(
    status: LineStatus, substitutes: list[SubstituteOption], now: datetime
) -> list[PageChoice]:
    """What the customer may do now: nothing on a shipped or cancelled line, nor once every
    unit is here (it ships); else keep waiting (until they said so), take an open offer, take
    an in-stock substitute, or cancel for a refund of what has not shipped."""
    if status.state.is_final or status.state is LineState.ALLOCATED:
        return []
    found: list[PageChoice] = []
    if status.consent != "explicit":
        found.append(
            PageChoice(
                action=LinkAction.WAIT,
                label="Keep waiting",
                detail="Tell us you are happy to wait for it.",
            )
        )
    found += [
        PageChoice(
            action=LinkAction.ACCEPT_OFFER,
            choice=offer.offer_id,
            label=f"Accept: {offer.description}",
            detail=f"Open until {offer.expires_at:%A %d %B %Y, %H:%M} UTC.",
        )
        for offer in status.offers
        if offer.status is OfferStatus.OPEN and offer.expires_at > now
    ]
    found += [
        PageChoice(
            action=LinkAction.SUBSTITUTE,
            choice=option.sku,
            label=f"Take {option.name} instead",
            detail="In stock: it ships now"
            + (f", {option.price} {status.currency}." if option.price else "."),
        )
        for option in substitutes
    ]
    found.append(
        PageChoice(
            action=LinkAction.CANCEL,
            label="Cancel this item",
            detail="You get a full refund of what has not shipped, at no cost.",
        )
    )
    return found


def customer_page(
    status: LineStatus, *, product: str, substitutes: list[SubstituteOption], now: datetime
) -> CustomerPage:
    certainty = _certainty(status)
    expected = None if status.state.is_final else (status.eta or None)
    charged, refunded = _money(status)
    next_text = NEXT_BY_DESCRIPTION.get(status.next_action or "")
    if next_text is None and not status.state.is_final:
        next_text = "We ship it as soon as it arrives, and send you its tracking number."
    return CustomerPage(
        order_id=status.order_id,
        line_id=status.line_id,
        product=product,
        quantity=status.quantity,
        state=status.state,
        state_text=STATE_TEXT[status.state],
        expected=expected,
        certainty=certainty,
        certainty_text=CERTAINTY_TEXT[certainty],
        next_at=status.next_deadline if not status.state.is_final else None,
        next_text=next_text,
        shipments=list(status.shipments),
        currency=status.currency,
        charged=charged,
        refunded=refunded,
        consent=status.consent,
        cancel_reason=status.cancel_reason,
        choices=choices_open(status, substitutes, now),
    )
