"""A line as the API, the CLI and the `status` query show it."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
    computed_field,
)

from domain.line.choices import Offer
from domain.line.effects import RefundRecord, ShipmentRecord
from domain.line.messages import MessageRecord
from domain.line.payment import PaymentView
from domain.line.state import LineState
from domain.requests import Customer
from domain.values import Channel, ShipPolicy


class LineStatus(BaseModel):
    """A line as the API, the CLI and the `status` query show it."""

    order_id: str
    line_id: str
    workflow_id: str
    sku: str
    quantity: int
    unit_price: str
    currency: str
    channel: Channel
    customer: Customer
    ordered_at: datetime
    ship_by: datetime
    ship_policy: ShipPolicy
    state: LineState
    allocated_quantity: int
    shipped_quantity: int
    eta: datetime | None = None
    escalation_level: int = 0
    next_deadline: datetime | None = None
    next_action: str | None = None
    """What happens at `next_deadline` unless stock arrives or the customer answers first."""
    consent: str | None = None
    """Whether the customer agreed to the delay: none, implied (silence) or explicit."""
    offers: list[Offer] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    refunds: list[RefundRecord] = Field(default_factory=list)
    cancel_reason: str | None = None
    payment: PaymentView | None = None
    """The line's money, for a line started with payment terms."""
    priority_class: int = 0
    """The line's priority class in its SKU's queue (lowest served first), fixed when it
    started."""
    cancelled_by: str | None = None
    """Who cancelled: `customer`, `order_system`, `ops`, or `policy` at one of the line's own
    deadlines."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def buyer_requested_cancel(self) -> bool | None:
        """For a cancelled marketplace line, whether the buyer asked for the cancel: the order
        system reports it to the marketplace as buyer-requested, which Amazon, Walmart and eBay
        do not hold against the seller (and `domain.health` excuses). False when the seller's
        side cancelled; None for a line not cancelled or sold on the own web store."""
        if self.state is not LineState.CANCELLED or self.channel is Channel.WEB:
            return None
        return self.cancelled_by == "customer"
