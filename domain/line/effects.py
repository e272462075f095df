"""What a line does in the store and outside: queueing, shipments, releases and refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from domain.line.state import LineState
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice
from domain.values import MAIN_LOCATION, Location, text


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
    tracking_number: Annotated[str, text(200)]
    carrier_shipment_id: Annotated[str, text(200)]
    expedited: bool
    created_at: datetime
    origin: Location = MAIN_LOCATION
    """The location the units left from."""
    parts: list[ShipmentRecord] = Field(default_factory=list)
    """A ship-complete order's shipment from several locations: one carrier shipment per
    origin (this record is the first); empty when everything left from one."""


class ReleaseInput(BaseModel):
    line_key: str
    sku: str
    reason: str
    requested_by: str | None = None
    """Who cancelled (the store keeps it); None in inputs recorded by earlier releases."""


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


class CancelRequest(BaseModel):
    """The `cancel` Update's payload: why, and who asked (the role of the credential that
    asked, or `policy` for the line's own deadlines)."""

    reason: Annotated[str, text(200)] = "requested"
    requested_by: str = "order_system"
    """Checked by the line's Update validator: only the line's deadlines cancel as `policy`."""
