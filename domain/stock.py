"""Stock and supply: arrivals, catalog stock counts, purchase orders, ETAs and availability."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from domain.requests import PurchaseOrderRequest, ReceiptRequest, SkuRequest


class AllocationNotice(BaseModel):
    """Units of stock given to one line in one store transaction."""

    allocation_id: int
    line_key: str
    order_id: str
    line_id: str
    quantity: int
    source: str
    """`receipt:{supplier}:{receipt}`, `sku:{sku}` (catalog stock) or `release:{line}`."""


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
