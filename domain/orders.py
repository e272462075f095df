"""Ship-complete orders: the lines of one order held until all are allocated, then shipped once."""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.line.effects import ShipmentRecord
from domain.requests import InStockLine
from domain.values import Identifier


class OrderInput(BaseModel):
    """What a ship-complete order's workflow starts with (from whichever line joins first)."""

    order_id: str
    line_ids: list[str]
    in_stock_lines: list[InStockLine]
    customer_id: str
    keep_together_on_cancel: bool = True
    """When a line is cancelled, the others still ship together (True) or each on its own."""


class LineReady(BaseModel):
    line_id: str
    sku: str
    quantity: int


class OrderShipmentInput(BaseModel):
    order_id: str
    customer_id: str
    items: list[InStockLine]
    line_ids: list[str] = Field(default_factory=list)
    """The backordered lines shipping in it, whose items come first in `items` (their units
    may be at several locations); empty in inputs recorded before locations."""

    @property
    def in_stock_items(self) -> list[InStockLine]:
        """The items of the order's lines that were in stock at checkout."""
        return self.items[len(self.line_ids) :]


class OrderShipped(BaseModel):
    shipment: ShipmentRecord


class OrderChange(BaseModel):
    cancelled_line: Identifier
    released: bool
    """True when the line now ships on its own instead of with the rest."""


class Withdraw(BaseModel):
    order_id: str
    line_id: str


class JoinOrder(BaseModel):
    order: OrderInput
    line_id: str


class OrderStatus(BaseModel):
    """A ship-complete order as its workflow sees it."""

    lines: list[str]
    ready: list[str]
    withdrawn: list[str]
    tracking_number: str | None
