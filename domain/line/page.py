"""A line as its customer sees it on the status page: in words, with the choices open now.

Pure: built from the line's status (`LineStatus`), the catalog's name for the item, the
substitutes in stock, the customer's locale and the clock; facts only, no words. The API
renders it (`api/templates/status.html`, in the words of `<locale>/status.html`, which the
seller may replace); what a choice does is the line's own rule, through the same Updates as
every other way in.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.line.choices import Offer, OfferStatus, SubstituteOption
from domain.line.effects import ShipmentRecord
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.line.timeline import Step, StepKind
from domain.links import LinkAction

NEXT_STEPS = frozenset(
    {
        StepKind.DELAY_NOTICE,
        StepKind.OFFER,
        StepKind.CHOICE_REQUEST,
        StepKind.CANCEL_NO_CONSENT,
        StepKind.CANCEL_MARKETPLACE,
        StepKind.RENEW_HOLD,
        StepKind.CANCEL_NO_PAYMENT,
    }
)
"""The deadlines the page tells the customer of (the others: it ships as soon as it arrives)."""
NEXT_BY_DESCRIPTION = {
    Step(kind=kind, at=datetime(2000, 1, 1)).describe(): kind for kind in NEXT_STEPS
}
"""The line's next deadline, by the status's `next_action`."""


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


class PageChoice(BaseModel):
    """One button: the form posts `action` (and `choice`: an offer id or a substitute's SKU).
    Its words are the page template's, from the offer or the substitute it is about."""

    action: LinkAction
    choice: str | None = None
    offer: Offer | None = None
    substitute: SubstituteOption | None = None


class CustomerPage(BaseModel):
    order_id: str
    line_id: str
    product: str
    quantity: int
    locale: str
    """The customer's language (BCP 47): the page's wording and its dates and money."""
    state: LineState
    expected: datetime | None
    certainty: Certainty
    next_at: datetime | None
    next_step: StepKind | None
    """What happens at `next_at`; None: it ships as soon as it arrives."""
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
        found.append(PageChoice(action=LinkAction.WAIT))
    found += [
        PageChoice(action=LinkAction.ACCEPT_OFFER, choice=offer.offer_id, offer=offer)
        for offer in status.offers
        if offer.status is OfferStatus.OPEN and offer.expires_at > now
    ]
    found += [
        PageChoice(action=LinkAction.SUBSTITUTE, choice=option.sku, substitute=option)
        for option in substitutes
    ]
    found.append(PageChoice(action=LinkAction.CANCEL))
    return found


def customer_page(
    status: LineStatus,
    *,
    product: str,
    substitutes: list[SubstituteOption],
    now: datetime,
    locale: str = "en",
) -> CustomerPage:
    certainty = _certainty(status)
    expected = None if status.state.is_final else (status.eta or None)
    charged, refunded = _money(status)
    final = status.state.is_final
    return CustomerPage(
        order_id=status.order_id,
        line_id=status.line_id,
        product=product,
        quantity=status.quantity,
        locale=locale,
        state=status.state,
        expected=expected,
        certainty=certainty,
        next_at=status.next_deadline if not final else None,
        next_step=None if final else NEXT_BY_DESCRIPTION.get(status.next_action or ""),
        shipments=list(status.shipments),
        currency=status.currency,
        charged=charged,
        refunded=refunded,
        consent=status.consent,
        cancel_reason=status.cancel_reason,
        choices=choices_open(status, substitutes, now),
    )
