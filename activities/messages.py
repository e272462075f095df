"""Customer messages: what each event tells the customer.

The content follows what customers ask of a backorder (DOMAIN.md and the seed texts): certainty
about the date, the options they have (wait, cancel at any time for a full refund, take an offer),
a free way to act on them (signed links), tracking once it ships, and the refunded amount when it
is cancelled. The delay notice carries what 16 CFR 435 requires. Plain text, for every channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from domain.line.effects import ShipmentRecord
from domain.line.messages import MessageInput, MessageKind
from domain.links import LinkAction

Urls = Mapping[tuple[LinkAction, str | None], str]
"""Signed URLs by (action, offer id), made by the activity for this message's links."""


def _day(value: datetime) -> str:
    return value.strftime("%A %d %B %Y")


def _when(value: datetime) -> str:
    return value.strftime("%A %d %B %Y, %H:%M UTC")


def _cancel_note(urls: Urls) -> str:
    link = urls.get((LinkAction.CANCEL, None))
    how = f"use this link: {link}" if link else "reply to this message"
    return (
        "You can cancel this item at any time before it ships and get a full refund, at no cost "
        f"to you: {how}"
    )


def _offer_lines(message: MessageInput, urls: Urls) -> str:
    lines = []
    for offer in message.offers:
        link = urls.get((LinkAction.ACCEPT_OFFER, offer.offer_id), "")
        lines.append(f"- {offer.description} (until {_day(offer.expires_at)}): {link}".rstrip(": "))
    return "\n".join(lines)


def _substitute_lines(message: MessageInput, urls: Urls) -> str:
    if not message.substitutes:
        return ""
    lines = ["Or take an alternative that is in stock now and ships at once:"]
    for option in message.substitutes:
        link = urls.get((LinkAction.SUBSTITUTE, option.sku), "")
        price = f", {option.price} {message.request.currency}" if option.price else ""
        lines.append(f"- {option.name} ({option.sku}{price}): {link}".rstrip(": "))
    return "\n".join(lines) + "\n"


def _require_shipment(message: MessageInput) -> ShipmentRecord:
    if message.shipment is None:
        raise ValueError(f"{message.kind} message needs its shipment")
    return message.shipment


def render(message: MessageInput, urls: Urls | None = None) -> tuple[str, str]:
    """Subject and body of the message for one event."""
    urls = urls or {}
    request = message.request
    item = f"{request.quantity} x {request.sku}"
    expected = message.eta or message.ship_by
    order = request.order_id
    wait_link = urls.get((LinkAction.WAIT, None))
    kind = message.kind
    if kind is MessageKind.BACKORDER_CONFIRMATION and message.is_preorder:
        release = message.release_at or expected
        subject = f"Order {order}: {request.sku} is on pre-order, ships from {_day(release)}"
        body = (
            f"Thank you for your order {order}. {item} is a pre-order: it is released on "
            f"{_day(release)} and ships from then.\n"
            f"Expected ship date: {_day(expected)}.\n"
            f"We will write to you if this date changes, and again with tracking when it ships.\n"
            f"{_cancel_note(urls)}"
        )
    elif kind is MessageKind.BACKORDER_CONFIRMATION:
        subject = (
            f"Order {order}: {request.sku} is on backorder, expected to ship by {_day(expected)}"
        )
        body = (
            f"Thank you for your order {order}. {item} is on backorder: we do not have it in "
            f"stock yet and will ship it as soon as it arrives.\n"
            f"Expected ship date: {_day(expected)}.\n"
            f"We will write to you if this date changes, and again with tracking when it ships.\n"
            f"{_cancel_note(urls)}"
        )
    elif kind is MessageKind.ETA_UPDATE:
        if message.eta is None:
            subject = f"Order {order}: we cannot give a date for {request.sku} any more"
            news = "Our supplier can no longer give us a date for it."
        else:
            subject = f"Order {order}: {request.sku} now expected to ship by {_day(message.eta)}"
            news = f"It is now expected to ship by {_day(message.eta)}."
        body = f"An update on {item} from your order {order}: {news}\n{_cancel_note(urls)}"
    elif kind is MessageKind.DELAY_NOTICE:
        notice = message.notice
        if notice is None:
            raise ValueError("a delay notice needs its facts")
        renewed = "Another delay" if notice.renewed else "A delay"
        subject = f"Order {order}: {renewed.lower()} to {request.sku}, please read"
        if notice.revised is not None:
            date_text = f"We now expect to ship it by {_day(notice.revised)}."
        else:
            date_text = "We are sorry: we cannot give you a new date at this time."
        if notice.silence_is_consent:
            choice = (
                "If you are happy to wait, you need do nothing. If not, you can cancel for a "
                "full refund at any time before it ships."
            )
        else:
            assert notice.answer_by is not None
            agree = f" by using this link: {wait_link}" if wait_link else " by replying"
            choice = (
                f"If you would like to keep waiting, please tell us{agree} before "
                f"{_when(notice.answer_by)}. If we do not hear from you by then, we will cancel "
                f"this item and refund you in full."
            )
        body = (
            f"{renewed} with {item} from your order {order}: it will not ship by the date we "
            f"promised ({_day(message.ship_by)}).\n{date_text}\n{choice}\n"
            f"{_substitute_lines(message, urls)}"
            f"You have the right to cancel and get a full, prompt refund, at no cost: "
            f"{_cancel_note(urls)}"
        )
    elif kind is MessageKind.APOLOGY_OFFER:
        subject = f"Order {order}: we are sorry about the wait for {request.sku}"
        body = (
            f"{item} from your order {order} is taking longer than we hoped, and we are sorry. "
            f"As a thank-you for your patience, choose one of these:\n"
            f"{_offer_lines(message, urls)}\n"
            f"{_substitute_lines(message, urls)}"
            f"Expected ship date: {_day(expected)}.\n{_cancel_note(urls)}"
        )
    elif kind is MessageKind.CHOICE_REQUEST:
        agree = f"keep waiting: {wait_link}" if wait_link else "keep waiting: reply to us"
        subject = f"Order {order}: please choose what happens to {request.sku}"
        body = (
            f"{item} from your order {order} has still not arrived, and the marketplace will "
            f"cancel the order if it has not shipped by {_when(message.deadline or expected)}.\n"
            f"Please choose: {agree}\n{_substitute_lines(message, urls)}"
            f"or cancel now. {_cancel_note(urls)}"
        )
    elif kind is MessageKind.OFFER_ACCEPTED:
        subject = f"Order {order}: your offer is confirmed"
        body = (
            f"Thank you for waiting for {item}. {message.detail or 'Your offer is confirmed.'}\n"
            f"Expected ship date: {_day(expected)}."
        )
    elif kind is MessageKind.ORDER_UPDATE:
        subject = f"Order {order}: a change to your order"
        body = f"{message.detail or 'Your order has changed.'}\n{_cancel_note(urls)}"
    elif kind is MessageKind.PARTIALLY_SHIPPED:
        shipment = _require_shipment(message)
        left = request.quantity - (message.quantity or 0)
        subject = f"Order {order}: {shipment.quantity} of {item} shipped"
        body = (
            f"Part of your backordered item has shipped: {shipment.quantity} of {item}.\n"
            f"Tracking number: {shipment.tracking_number}.\n"
            f"The remaining {left} will ship as soon as they arrive; expected by "
            f"{_day(expected)}.\n{_cancel_note(urls)}"
        )
    elif kind is MessageKind.SHIPPED:
        shipment = _require_shipment(message)
        speed = "expedited " if shipment.expedited else ""
        subject = f"Order {order}: {request.sku} has shipped"
        body = (
            f"Good news: your backordered item has arrived and is on its way by {speed}shipping: "
            f"{shipment.quantity} x {request.sku}.\n"
            f"Tracking number: {shipment.tracking_number}.\n"
            f"Thank you for waiting for it."
        )
    elif kind is MessageKind.CANCELLED_REFUNDED:
        amount = Decimal(message.refund_amount or "0")
        reason = f"{message.detail}\n" if message.detail else ""
        if message.charged is not None and amount == 0 and Decimal(message.charged) == 0:
            subject = f"Order {order}: {request.sku} cancelled, nothing charged"
            money = "Nothing was charged: the hold on your payment method has been released.\n"
        elif message.charged is not None and amount == 0:
            subject = f"Order {order}: {request.sku} cancelled"
            money = (
                f"You were charged {message.charged} {request.currency} for what shipped, and "
                f"nothing more: the hold on your payment method has been released.\n"
            )
        else:
            subject = f"Order {order}: {request.sku} cancelled and refunded"
            money = (
                f"Refund: {amount:.2f} {request.currency}, for every unit that did not ship, "
                f"to your original payment method. It reaches you within 7 business days.\n"
            )
        body = (
            f"{item} from order {order} has been cancelled.\n{reason}{money}"
            f"Nothing else on your order has changed."
        )
    elif kind is MessageKind.PAYMENT_UPDATE_REQUEST:
        link = urls.get((LinkAction.UPDATE_PAYMENT, None))
        how = f"use this link: {link}" if link else "reply to this message"
        subject = f"Order {order}: please update your payment method for {request.sku}"
        body = (
            f"{item} from your order {order} is still on its way to us, and we need to renew "
            f"the hold on your payment method until it ships. Your bank declined it.\n"
            f"Please give us another payment method before "
            f"{_when(message.deadline or expected)}; to do so, {how}\n"
            f"Without one by then, we will cancel this item. Nothing will be charged.\n"
            f"{_cancel_note(urls)}"
        )
    elif kind is MessageKind.SURVEY:
        link = urls.get((LinkAction.SURVEY, None))
        how = f"use this link: {link}" if link else "reply to this message with a number"
        subject = f"Order {order}: how was your wait for {request.sku}?"
        body = (
            f"Thank you again for waiting for {item} from your order {order}.\n"
            f"Would you tell us how the wait went? One score from 1 (poor) to 5 (very good), and a "
            f"comment if you like: {how}\n"
            f"It takes a minute, and we read every answer."
        )
    else:  # pragma: no cover - the enum is exhaustive; a new kind needs a template
        raise ValueError(f"no template for message kind {kind}")
    status_link = urls.get((LinkAction.STATUS, None))
    if status_link:
        body += f"\nSee your item's status and your choices at any time: {status_link}"
    return subject, body
