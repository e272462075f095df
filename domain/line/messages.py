"""What a line tells its customer: the kinds of message, what one is built from, and its record."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import (
    BaseModel,
    Field,
)

from domain.line.choices import Offer, SubstituteOption
from domain.line.effects import ShipmentRecord
from domain.line.timeline import NoticeFacts
from domain.links import LinkAction
from domain.requests import BackorderRequest


class MessageKind(StrEnum):
    BACKORDER_CONFIRMATION = "backorder_confirmation"
    ETA_UPDATE = "eta_update"
    DELAY_NOTICE = "delay_notice"
    """The delay-option notice of 16 CFR 435, first or renewed."""
    APOLOGY_OFFER = "apology_offer"
    CHOICE_REQUEST = "choice_request"
    OFFER_ACCEPTED = "offer_accepted"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED_REFUNDED = "cancelled_refunded"
    BACK_IN_STOCK = "back_in_stock"
    ORDER_UPDATE = "order_update"
    PAYMENT_UPDATE_REQUEST = "payment_update_request"
    """A renewal of the payment hold was declined: another payment method, please."""
    SURVEY = "survey"
    """A while after the last shipment: how was the wait? (once per line)"""
    """Another line of a ship-complete order was cancelled: what happens to this one now."""


class MessageRecord(BaseModel):
    kind: MessageKind
    subject: str
    body: str
    idempotency_key: str
    sent_at: datetime


class LinkSpec(BaseModel):
    """A link the message activity signs into the message (the key stays out of histories)."""

    action: LinkAction
    offer_id: str | None = None
    expires_at: datetime


class MessageInput(BaseModel):
    line_key: str
    request: BackorderRequest
    kind: MessageKind
    event_key: str
    """Names the event the message is about; with the line it makes the idempotency key."""
    ship_by: datetime
    eta: datetime | None = None
    shipment: ShipmentRecord | None = None
    refund_amount: str | None = None
    quantity: int | None = None
    notice: NoticeFacts | None = None
    offers: list[Offer] = Field(default_factory=list)
    substitutes: list[SubstituteOption] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)
    detail: str | None = None
    """A line of text specific to the event (why it was cancelled, what was accepted)."""
    deadline: datetime | None = None
    """The deadline the message is about (the marketplace's auto-cancel)."""
    accepted_offer_id: str | None = None
    """The offer whose acceptance this message confirms."""
    is_preorder: bool = False
    """The line is a preorder: its messages say "pre-order, ships from" its release date."""
    release_at: datetime | None = None
    """A preorder's release date."""
    first: bool = False
    """The line's first message: it also confirms the order (one message per moment)."""
    locale: str | None = None
    """The customer's locale (BCP 47); None: the channel's, or English."""
    charged: str | None = None
    """On a cancel of a line with payment terms: what was charged in all and kept (the value
    of what shipped); "0" when nothing was charged, so the message can say so."""
    survey_at: datetime | None = None
    """On the message of a line's last shipment: when its customer is to be asked how the wait
    went. The store keeps the survey due with the message's record, in one transaction, and
    the survey sweep sends it (`activities.surveys`)."""


class SurveyInput(BaseModel):
    """The survey after the wait: one message to the line's customer at `ask_at`."""

    line_key: str
    request: BackorderRequest
    ship_by: datetime
    ask_at: datetime
    locale: str | None = None
    """The language of the line's messages (None: English, as surveys started by a line's
    workflow were)."""

    def message(self) -> MessageInput:
        """The survey's message, under the line's one survey key."""
        return MessageInput(
            line_key=self.line_key,
            request=self.request,
            kind=MessageKind.SURVEY,
            event_key=SURVEY_EVENT_KEY,
            ship_by=self.ship_by,
            locale=self.locale,
        )


SURVEY_EVENT_KEY = "survey"
"""One survey per line: its message's idempotency key is the line's and this."""
