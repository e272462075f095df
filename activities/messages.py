"""Customer messages: what each event tells the customer.

The content follows what customers ask of a backorder (DOMAIN.md): certainty about the date,
the options they have (wait, or cancel at any time for a full refund), tracking once it ships,
and the refunded amount when it is cancelled. Plain text, so every channel can carry it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from domain.models import MessageInput, MessageKind, ShipmentRecord


def _day(value: datetime) -> str:
    return value.strftime("%A %d %B %Y")


def _item(message: MessageInput) -> str:
    return f"{message.request.quantity} x {message.request.sku}"


def render(message: MessageInput) -> tuple[str, str]:
    """Subject and body of the message for one event."""
    request = message.request
    expected = message.eta or message.ship_by
    order = request.order_id
    cancel_note = (
        "You can cancel this item at any time before it ships and get a full refund, at no "
        "cost to you: reply to this message or use the cancel link on your order page."
    )
    if message.kind is MessageKind.BACKORDER_CONFIRMATION:
        subject = (
            f"Order {order}: {request.sku} is on backorder, expected to ship by {_day(expected)}"
        )
        body = (
            f"Thank you for your order {order}. {_item(message)} is on backorder: we do not "
            f"have it in stock yet and will ship it as soon as it arrives.\n"
            f"Expected ship date: {_day(expected)}.\n"
            f"We will write to you if this date changes, and again with tracking when it ships.\n"
            f"{cancel_note}"
        )
    elif message.kind is MessageKind.PARTIALLY_SHIPPED:
        shipment = _require_shipment(message)
        left = request.quantity - (message.quantity or 0)
        subject = (
            f"Order {order}: {shipment.quantity} of {request.quantity} x {request.sku} shipped"
        )
        body = (
            f"Part of your backordered item has shipped: {shipment.quantity} of "
            f"{request.quantity} x {request.sku}.\n"
            f"Tracking number: {shipment.tracking_number}.\n"
            f"The remaining {left} will ship as soon as they arrive; expected by "
            f"{_day(expected)}.\n{cancel_note}"
        )
    elif message.kind is MessageKind.SHIPPED:
        shipment = _require_shipment(message)
        speed = "expedited " if shipment.expedited else ""
        subject = f"Order {order}: {request.sku} has shipped"
        body = (
            f"Good news: your backordered item has arrived and is on its way by {speed}shipping: "
            f"{shipment.quantity} x {request.sku}.\n"
            f"Tracking number: {shipment.tracking_number}.\n"
            f"Thank you for waiting for it."
        )
    elif message.kind is MessageKind.CANCELLED_REFUNDED:
        amount = Decimal(message.refund_amount or "0")
        subject = f"Order {order}: {request.sku} cancelled and refunded"
        body = (
            f"{_item(message)} from order {order} has been cancelled.\n"
            f"Refund: {amount:.2f} {request.currency}, in full for every unit that did not ship, "
            f"to your original payment method. It reaches you within 7 business days.\n"
            f"Nothing else on your order has changed."
        )
    else:  # pragma: no cover - the enum is exhaustive; a new kind needs a template
        raise ValueError(f"no template for message kind {message.kind}")
    return subject, body


def _require_shipment(message: MessageInput) -> ShipmentRecord:
    if message.shipment is None:
        raise ValueError(f"{message.kind} message needs its shipment")
    return message.shipment
