"""What the service answers: the response bodies of the HTTP API, which the Python client returns
too. Beside the requests they answer; never a table object.

A line's full status is `domain.line.status.LineStatus`, the metrics `domain.metrics.Metrics`, a
product page's label `domain.stock.Availability`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from domain.line.choices import Offer
from domain.line.effects import RefundRecord
from domain.line.payment import PaymentView
from domain.line.state import LineState
from domain.values import Channel


class StartAnswer(BaseModel):
    """A line's workflow: started now (`created`), or already by the same request."""

    workflow_id: str
    order_id: str
    line_id: str
    created: bool
    over_limit: bool = False
    """Sold beyond the SKU's backorder limit: accepted all the same, and its customer is told
    at once that no date can be given."""


class ReceiptAnswer(BaseModel):
    workflow_id: str
    receipt_id: str
    created: bool
    """False when this receipt id had been reported already, with the same values."""


class PurchaseOrderAnswer(BaseModel):
    supplier_id: str
    po_id: str
    sku: str
    quantity: int
    received_quantity: int
    inbound: int
    """Units still to come: quantity minus what arrived on receipts naming the PO."""
    expected_at: datetime


class SupplierPerformance(BaseModel):
    """A supplier's record (docs/selling.md): over its last receipts on purchase orders, and
    the fill rate of its POs that are due."""

    supplier_id: str
    receipts: int
    """Receipts on POs in the record (at most the policy's `history_receipts`)."""
    on_time_rate: float | None
    """Receipts at most `on_time_grace_days` late, over receipts; None without any."""
    lateness_p50_seconds: float | None
    """Median lateness against the PO's expected date (negative: early); nearest rank."""
    lateness_p90_seconds: float | None
    fill_rate: float | None
    """Units received (at most the quantity ordered) over units ordered, on POs whose expected
    date has passed; None when none has."""
    due_units_ordered: int
    due_units_received: int
    eta_allowance_seconds: float | None
    """What ETAs built on its POs add to their expected date; None until it has a record."""


class LocationStock(BaseModel):
    """A SKU's stock at one location."""

    free_stock: int
    """Units on hand here that no line holds."""
    inbound: int = 0
    """Units still to come here on purchase orders."""


class SkuView(BaseModel):
    """A catalog entry and its free stock (in all, and by location)."""

    sku: str
    name: str
    free_stock: int
    substitutes: list[str]
    price: str | None = None
    backorder_limit: int | None = None
    release_at: datetime | None = None
    ship_before_release: bool = False
    locations: dict[str, LocationStock] = Field(default_factory=dict)
    """Stock by location, `main` first, then by name (docs/locations.md)."""
    stock: dict[str, int] = Field(default_factory=dict)
    """The free stock of each location, in the shape `PUT /v1/skus/{sku}` counts it."""


class SkuAnswer(SkuView):
    allocated_to_waiting_lines: int
    """Units the update's stock count gave to waiting lines at once."""


class EtaAnswer(BaseModel):
    workflow_id: str
    eta: datetime | None


class CancelAnswer(BaseModel):
    """A cancel: done (`state` cancelled, with what was released and refunded), or accepted and
    still under way (`state` cancelling, 202)."""

    state: LineState | Literal["cancelling"]
    released_quantity: int | None = None
    refund: RefundRecord | None = None
    detail: str | None = None


class OfferAccepted(BaseModel):
    result: Literal["offer_accepted"] = "offer_accepted"
    offer: Offer


class Substituted(BaseModel):
    result: Literal["substituted"] = "substituted"
    sku: str
    state: LineState


class Waiting(BaseModel):
    result: Literal["waiting"] = "waiting"
    consent: str | None
    eta: datetime | None


class Cancelled(BaseModel):
    result: Literal["cancelled"] = "cancelled"
    state: LineState
    released_quantity: int
    refund: RefundRecord | None


class Cancelling(BaseModel):
    result: Literal["cancelling"] = "cancelling"
    detail: str = "accepted; the refund is under way"


class PaymentUpdated(BaseModel):
    result: Literal["payment_updated"] = "payment_updated"
    payment: PaymentView


ChoiceAnswer = Annotated[
    OfferAccepted | Substituted | Waiting | Cancelled | Cancelling | PaymentUpdated,
    Field(discriminator="result"),
]
"""What a customer's choice did (a signed link, or the order system acting for the customer)."""


class SalesDayAnswer(BaseModel):
    channel: Channel
    day: date
    order_lines: int


class SubscriptionAnswer(BaseModel):
    subscription_id: str
    sku: str
    status: str
    """`active`, then `notified` (once) or `cancelled`."""


class OutreachTask(BaseModel):
    """A personal-outreach task for customer service (top-tier customers kept waiting)."""

    key: str
    line_key: str
    order_id: str
    customer_id: str
    customer_email: str
    reason: str
    status: str
    created_at: datetime


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    store: str
    temporal: str


class Problem(BaseModel):
    """An error answer: what went wrong, in words for the caller."""

    detail: str
    kind: str | None = None
    """For a refusal by the line: the contract's error type (`LineFinal`, `OfferUsed`...)."""
