"""Stock and supply: arrivals, catalog stock counts, purchase orders, ETAs and availability."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from domain.requests import PurchaseOrderRequest, ReceiptRequest, SkuRequest
from domain.values import MAIN_LOCATION, PRINTABLE, Identifier, Location

ALLOCATION_SOURCE = r"^(receipt|sku|release|substitute|returned):[A-Za-z0-9._:-]+$"
"""What gave a line its stock; checked where a line receives it, since a signal can come from
anyone who can reach Temporal."""


class AllocationNotice(BaseModel):
    """Units of stock given to one line in one store transaction."""

    allocation_id: int
    line_key: Annotated[str, Field(max_length=160, pattern=PRINTABLE)]
    order_id: Identifier
    line_id: Identifier
    quantity: int
    source: Annotated[str, Field(max_length=200, pattern=ALLOCATION_SOURCE)]
    """`receipt:{supplier}:{receipt}`, `sku:{sku}` (catalog stock), `release:{line}` or
    `substitute:{line}`: a line shows the receipt's id to ops (a search attribute)."""
    location: Location = MAIN_LOCATION
    """Where the units are (notices from before locations: `main`)."""


class ReceiptInput(BaseModel):
    supplier_id: str
    receipt: ReceiptRequest
    request_hash: str


class ReleaseMove(BaseModel):
    """A preorder line whose release moved later, and its new expected ship date."""

    line_key: str
    release_at: datetime
    eta: datetime


class StockResult(BaseModel):
    """What one stock transaction (a receipt, a catalog update) did."""

    sku: str
    allocations: list[AllocationNotice]
    free_stock: int
    duplicate: bool = False
    release_moves: list[ReleaseMove] = Field(default_factory=list)
    """Preorder lines to tell that their release moved later (catalog updates only)."""
    ship_now: list[str] = Field(default_factory=list)
    """Open preorder lines, in queue order, whose SKU now ships before its release: what they
    hold ships now (catalog updates only)."""
    redate_skus: list[str] = Field(default_factory=list)
    """Other SKUs on the supplier's open POs, whose ETAs its new lateness may move (receipts
    on a PO only)."""


class SignalReleaseMoves(BaseModel):
    moves: list[ReleaseMove]


class SignalShipBeforeRelease(BaseModel):
    sku: str
    line_keys: list[str]


class SkuInput(BaseModel):
    sku: str
    request: SkuRequest
    request_hash: str


class SignalAllocationsInput(BaseModel):
    allocations: list[AllocationNotice]
    skip_line_key: str | None = None
    """The line already told by its own activity result, not signalled again."""


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
    """`in_stock`, `low_stock`, `preorder`, `backorder` or `out_of_stock`."""
    free_stock: int
    waiting_units: int
    """Units that lines already waiting still need."""
    inbound_units: int
    sellable_quantity: int | None = None
    """What a storefront or marketplace feed may still sell now: free + inbound + the backorder
    limit - units already waiting (docs/selling.md); None when the SKU has no limit."""
    backorder_limit: int | None = None
    release_at: datetime | None = None
    """The release date of a product not yet released (a preorder)."""
    ships_from: datetime | None = None
    ships_by: datetime | None = None
    """For a backorder: the window a new order placed now would ship in."""
