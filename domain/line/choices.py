"""What a customer may choose while a line waits: goodwill offers, consent to wait, substitutes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.policy import OfferKind
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice
from domain.values import Identifier


class OfferStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    WITHDRAWN = "withdrawn"
    """Another offer of the same apology was accepted."""


class Offer(BaseModel):
    offer_id: str
    rung: str
    kind: OfferKind
    percent: int | None = None
    points: int | None = None
    description: str
    expires_at: datetime
    status: OfferStatus = OfferStatus.OPEN


class AcceptOffer(BaseModel):
    offer_id: Identifier


class AgreeToWait(BaseModel):
    requested_by: Identifier = "customer"


class OfferGrant(BaseModel):
    """A discount code or loyalty points to issue through the storefront."""

    line_key: str
    request: BackorderRequest
    offer: Offer


class OutreachInput(BaseModel):
    line_key: str
    request: BackorderRequest
    rung: str
    reason: str


class TakeSubstitute(BaseModel):
    sku: Identifier


class FindSubstitutes(BaseModel):
    sku: str
    quantity: int


class SubstituteInput(BaseModel):
    line_key: str
    from_sku: str
    to_sku: str
    locations: list[str] = Field(default_factory=list)
    """The line's channel location order (docs/locations.md): where the substitute's units are
    taken from first. Empty in inputs recorded before: `main` first, then by name."""


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
