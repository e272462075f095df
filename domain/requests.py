"""What enters the service: the bodies of the HTTP API, which the Python client and the CLI build
too. Validated once, here; unknown fields are refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
    StrictInt,
    model_validator,
)

from domain.values import (
    Channel,
    CustomerTier,
    DecimalString,
    Identifier,
    Quantity,
    ShipPolicy,
    Strict,
    Timestamp,
    text,
)


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


class CancelBody(Strict):
    """A cancel, as the order system or ops send it."""

    reason: Annotated[str, text(200)] = "requested"
    requested_by: Annotated[str, text(64)] = "order_system"
