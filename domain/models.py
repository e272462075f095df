"""The service's vocabulary as pydantic models: API bodies, workflow and activity payloads.

These models cross every boundary (HTTP, Temporal payloads, the Python client), so validation
lives here once. Workflow modules import this file, so it imports nothing but pydantic and the
standard library: no table model, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Ids become parts of workflow ids (`backorder:{order}:{line}`), so `:` and spaces are refused:
with them, order `a:b` line `c` and order `a` line `b:c` would be the same workflow."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


def _decimal_string(value: str) -> str:
    try:
        amount = Decimal(value)
    except ArithmeticError as exc:
        raise ValueError("must be a decimal string such as '19.99'") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite amount >= 0")
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ValueError("must have at most 4 decimal places")
    return value


DecimalString = Annotated[
    str, Field(pattern=r"^\d{1,12}(\.\d{1,4})?$"), AfterValidator(_decimal_string)
]
Quantity = Annotated[StrictInt, Field(gt=0, le=1_000_000)]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    """Stored and compared in UTC: SQLite keeps no offset, and queue order compares instants."""
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = LATEST  # past year 9999 in UTC: out of range all the same
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y} and {LATEST:%Y}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
"""A point in time with its offset, kept in UTC."""


PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Free text without control characters (tab and newlines allowed): PostgreSQL refuses NUL in
text, and a NUL accepted here would fail later, inside a workflow, instead of at the door."""


def text(max_length: int) -> Any:
    """A free-text field: 1 to `max_length` printable characters."""
    return Field(min_length=1, max_length=max_length, pattern=PRINTABLE)


class Strict(BaseModel):
    """Unknown fields are refused: a misspelt field must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(StrEnum):
    WEB = "web"
    AMAZON = "amazon"
    WALMART = "walmart"
    EBAY = "ebay"
    ETSY = "etsy"


class CustomerTier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"


class ShipPolicy(StrEnum):
    PARTIAL = "partial"
    """Ship whatever is allocated as soon as it is allocated."""
    COMPLETE = "complete"
    """Hold allocated units until the whole quantity is allocated, then ship once."""


class LineState(StrEnum):
    RECEIVED = "received"
    """Accepted by the API; the workflow has not recorded it in the store yet."""
    WAITING = "waiting"
    PARTIALLY_ALLOCATED = "partially_allocated"
    ALLOCATED = "allocated"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (LineState.SHIPPED, LineState.CANCELLED)

    @staticmethod
    def of(quantity: int, allocated: int, shipped: int) -> LineState:
        """The state of a line that is not cancelled, from its quantities."""
        if shipped >= quantity:
            return LineState.SHIPPED
        if shipped > 0:
            return LineState.PARTIALLY_SHIPPED
        if allocated >= quantity:
            return LineState.ALLOCATED
        if allocated > 0:
            return LineState.PARTIALLY_ALLOCATED
        return LineState.WAITING


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
    """Another line of a ship-complete order was cancelled: what happens to this one now."""


class Customer(Strict):
    id: Identifier
    email: Annotated[
        str,
        Field(
            pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
            max_length=254,
        ),
    ]
    tier: CustomerTier = CustomerTier.STANDARD


def canonical_hash(model: BaseModel) -> str:
    """A stable hash of a request: equal bodies hash equal whatever their key order."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class InStockLine(Strict):
    sku: Identifier
    quantity: Quantity


class BackorderRequest(Strict):
    """One backordered order line, as the order system sends it."""

    order_id: Identifier
    line_id: Identifier
    sku: Identifier
    quantity: Quantity
    unit_price: DecimalString
    """Price of one unit in `currency`, as a decimal string ('19.99'): never a float."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    channel: Channel
    customer: Customer
    ordered_at: Timestamp
    ship_by: Timestamp | None = None
    """The marketplace's ship-by date; when absent, ordered-at plus the channel's handling time."""
    ship_policy: ShipPolicy = ShipPolicy.PARTIAL
    order_lines: list[Identifier] = Field(default_factory=list, max_length=100)
    """For a ship-complete order: the ids of all its backordered lines, this one included.
    They are held until every one is allocated, then leave in one shipment."""
    in_stock_lines: list[InStockLine] = Field(default_factory=list, max_length=100)
    """The ship-complete order's lines that were in stock at checkout: held and shipped with
    the backordered ones."""

    @model_validator(mode="after")
    def _consistent(self) -> BackorderRequest:
        if self.ship_by is not None and self.ship_by < self.ordered_at:
            raise ValueError("ship_by must not be before ordered_at")
        if self.order_lines and self.line_id not in self.order_lines:
            raise ValueError("order_lines must include this line's own line_id")
        if (
            self.order_lines or self.in_stock_lines
        ) and self.ship_policy is not ShipPolicy.COMPLETE:
            raise ValueError("order_lines and in_stock_lines need ship_policy 'complete'")
        return self

    @property
    def ships_with_order(self) -> bool:
        """Held for the other lines of a ship-complete order, and shipped with them."""
        return len(self.order_lines) > 1 or bool(self.order_lines and self.in_stock_lines)

    def line_total(self, quantity: int | None = None) -> Decimal:
        return Decimal(self.unit_price) * (self.quantity if quantity is None else quantity)


class ReceiptRequest(Strict):
    """Stock that arrived from a supplier."""

    receipt_id: Identifier
    sku: Identifier
    quantity: Quantity
    po_id: Identifier | None = None


class SubscriptionRequest(Strict):
    """Tell this customer once when the SKU is back in stock."""

    sku: Identifier
    customer: Customer


class PurchaseOrderRequest(Strict):
    """Stock a supplier has on order for us: what, how much, and when it should arrive."""

    sku: Identifier
    quantity: Quantity
    expected_at: Timestamp


class SkuRequest(Strict):
    """A catalog entry. `free_stock`, when given, sets the units on hand that no line holds (a
    stock count); left out, the stock is unchanged. Arrivals are reported as receipts."""

    name: Annotated[str, text(200)]
    free_stock: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = None
    substitutes: list[Identifier] = Field(default_factory=list, max_length=50)
    price: DecimalString | None = None
    """Unit price, used to price a substitute for a line of another SKU."""


class CancelRequest(Strict):
    reason: Annotated[str, text(200)] = "requested"
    requested_by: Annotated[str, text(64)] = "order_system"


# ---- workflow and activity payloads -------------------------------------------------------


class AllocationNotice(BaseModel):
    """Units of stock given to one line in one store transaction."""

    allocation_id: int
    line_key: str
    order_id: str
    line_id: str
    quantity: int
    source: str
    """`receipt:{supplier}:{receipt}`, `sku:{sku}` (catalog stock) or `release:{line}`."""


class RecordLineResult(BaseModel):
    allocations: list[AllocationNotice]
    """Every allocation the transaction made, this line's and (rarely) others'."""
    allocated_quantity: int
    shipped_quantity: int
    state: LineState
    eta: datetime | None
    lines_behind: bool = False
    """The new line went ahead of others in the queue (an earlier ship-by): their ETAs may
    have moved back. Lines recorded before this field existed report False."""


class ShipmentInput(BaseModel):
    line_key: str
    request: BackorderRequest
    sequence: int
    """1 for the line's first shipment, 2 for the next: part of the idempotency key."""
    quantity: int
    expedited: bool = False
    order_shipment: ShipmentRecord | None = None
    """Set when the line left in its order's shipment: recorded, not booked again."""


class ShipmentRecord(BaseModel):
    sequence: int
    quantity: int
    tracking_number: str
    carrier_shipment_id: str
    expedited: bool
    created_at: datetime


class MessageRecord(BaseModel):
    kind: MessageKind
    subject: str
    body: str
    idempotency_key: str
    sent_at: datetime


class ReleaseInput(BaseModel):
    line_key: str
    sku: str
    reason: str


class ReleaseResult(BaseModel):
    allocated_quantity: int
    shipped_quantity: int
    released_quantity: int
    """Units the line held and gave back to the queue."""
    refund_quantity: int
    """Units never shipped: what the customer is refunded for."""
    reallocated: list[AllocationNotice]
    already_cancelled: bool


class RefundInput(BaseModel):
    line_key: str
    request: BackorderRequest
    quantity: int
    reason: str
    event: str = "refund"
    """With the line, the idempotency key: `refund` for the cancellation, `offer:{id}` for a
    partial refund offered while the customer waits."""
    amount: str | None = None
    """The amount, when it is not the quantity times the unit price."""


class RefundRecord(BaseModel):
    refund_id: str
    amount: str
    currency: str
    quantity: int
    created_at: datetime


class CancelResult(BaseModel):
    state: LineState
    released_quantity: int
    refund: RefundRecord | None


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
    offers: list[dict[str, Any]] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    refunds: list[RefundRecord] = Field(default_factory=list)
    cancel_reason: str | None = None


class ReceiptInput(BaseModel):
    supplier_id: str
    receipt: ReceiptRequest
    request_hash: str


class StockResult(BaseModel):
    """What one stock transaction (a receipt, a catalog update) did."""

    sku: str
    allocations: list[AllocationNotice]
    free_stock: int
    duplicate: bool = False


class SkuInput(BaseModel):
    sku: str
    request: SkuRequest
    request_hash: str


class SignalAllocationsInput(BaseModel):
    allocations: list[AllocationNotice]
    skip_line_key: str | None = None
    """The line already told by its own activity result, not signalled again."""


class SubstituteInput(BaseModel):
    line_key: str
    from_sku: str
    to_sku: str


class SubstituteOption(BaseModel):
    sku: str
    name: str
    free_stock: int
    price: str | None = None


class SubstituteResult(BaseModel):
    quantity: int
    """Units of the substitute now allocated to the line."""
    released_quantity: int
    """Units of the old SKU the line gave back to its queue."""
    reallocated: list[AllocationNotice]
    unit_price: str | None


class PurchaseOrderInput(BaseModel):
    supplier_id: str
    po_id: str
    order: PurchaseOrderRequest


class RefreshEtas(BaseModel):
    sku: str
    for_line: str | None = None
    """A line that wants its own ETA back instead of a signal."""


class EtaChange(BaseModel):
    line_key: str
    eta: datetime | None


class Availability(BaseModel):
    """What a product page shows for a SKU, and the facts behind it."""

    sku: str
    label: str
    status: str
    """`in_stock`, `low_stock`, `backorder` or `out_of_stock`."""
    free_stock: int
    waiting_units: int
    """Units that lines already waiting still need."""
    inbound_units: int
    ships_from: datetime | None = None
    ships_by: datetime | None = None
    """For a backorder: the window a new order placed now would ship in."""


class Percentiles(BaseModel):
    """A distribution of durations: nearest-rank p50 and p90 (None when there is nothing)."""

    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    sum_seconds: float


class Rate(BaseModel):
    numerator: int
    denominator: int
    rate: float | None
    """numerator / denominator; None while the denominator is zero."""


class Metrics(BaseModel):
    """Business figures from the store; definitions in `store.metrics` and the README."""

    generated_at: datetime
    open_lines: dict[str, int]
    closed_lines: dict[str, int]
    backorder_age: Percentiles
    time_to_ship: Percentiles
    arrival_fill_rate: Rate
    cancellation_rate: Rate
    sla_breach_rate: Rate
    offer_acceptance_rate: Rate
    messages_sent: dict[str, int]
