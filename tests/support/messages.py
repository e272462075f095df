"""Lines on the fast policy, and what the notification service got for them: kinds, times, and
the signed links in the messages."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.factories import backorder, new_id
from tests.support.poll import eventually
from tests.support.stack import Stack

LINK = re.compile(r"http://\S+/v1/links/(\S+)")


async def sent(stack: Stack, order: str) -> list[dict[str, Any]]:
    """Messages the notification service accepted for the line, in order."""
    return await stack.requests("notifications", f"backorder:{order}:1")


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [message["body"]["kind"] for message in messages]


def at(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["received_at"])


async def wait_for_kind(stack: Stack, order: str, kind: str, within: float = 20) -> dict[str, Any]:
    """The line's first message of `kind`, once it was sent."""
    messages = await eventually(
        lambda: sent(stack, order),
        lambda messages: kind in kinds(messages),
        within=within,
        what=f"a {kind} message for {order}",
    )
    return next(message for message in messages if message["body"]["kind"] == kind)


async def wait_for_offer(
    stack: Stack, order: str, offer_id: str, within: float = 20
) -> dict[str, Any]:
    """The line's message that made the offer: an apology, or a notice or choice request that
    went out at the same moment (one message per moment)."""
    messages = await eventually(
        lambda: sent(stack, order),
        lambda messages: any(("accept_offer", offer_id) in links(m) for m in messages),
        within=within,
        what=f"an offer {offer_id} for {order}",
    )
    return next(m for m in messages if ("accept_offer", offer_id) in links(m))


def links(message: dict[str, Any]) -> dict[tuple[str, str | None], str]:
    """The signed links in a message, by (action, offer id), read from their claims."""
    found = {}
    for token in LINK.findall(message["body"]["body"]):
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        found[(claims["action"], claims["offer"])] = token
    return found


RECEIVING = timedelta(days=1)
"""The stack's supply runs on real days: a purchase order's units are received a day after its
date, which is when the lines it covers are dated."""


async def inbound(stack: Stack, sku: str, quantity: int, eta: datetime) -> None:
    """Supply inbound that dates the next `quantity` units of the SKU's queue at `eta`: a
    purchase order of a supplier of its own (no record of lateness moves its date)."""
    body = {"sku": sku, "quantity": quantity, "expected_at": (eta - RECEIVING).isoformat()}
    response = await stack.api.put(
        f"/v1/suppliers/{new_id('supplier')}/purchase-orders/{new_id('po')}",
        json=body,
        headers=stack.auth("ops"),
    )
    assert response.status_code == 201, response.text


async def start_fast(
    stack: Stack, order: str, sku: str, *, ship_in: float, eta_in: float | None = None, **extra: Any
) -> datetime:
    """A line on the fast policy whose ship-by is `ship_in` seconds away, once its first message
    went out; returns ship-by. `eta_in`: supply inbound dates it that many seconds from now (a
    date with a basis); without, nothing inbound dates it."""
    now = datetime.now(UTC)
    ship_by = now + timedelta(seconds=ship_in)
    if eta_in is not None:
        await inbound(stack, sku, extra.get("quantity", 1), now + timedelta(seconds=eta_in))
    body = backorder(order, sku, ordered_at=now, ship_by=ship_by, **extra)
    response = await stack.fast.post("/v1/backorders", json=body, headers=stack.auth("order"))
    assert response.status_code == 201, response.text
    await stack.wait_line(order, lambda line: len(line["messages"]) >= 1)
    return ship_by


async def set_eta(stack: Stack, order: str, eta: datetime | None) -> None:
    await stack.as_("ops").set_eta(order, "1", eta)
