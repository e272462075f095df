"""`backorders demo --fast`: the customer's side, live, on policy days of a few seconds.

A handful of customers, each showing one moment a real backorder takes days or weeks to reach:

- A, kettle (web): a delay notice with a new date, an apology offer taken on the status page,
  the shipment, the survey answered.
- B, kettle (web): the same notice and offer, refused ("keep waiting" instead), the shipment,
  the survey.
- M, lamp (amazon): a delay notice, the marketplace's choice request, then the cancel before
  the marketplace's own auto-cancel, refunded in full.
- P, mug (web), paid by a card hold: the hold renewed before it lapses, charged when it ships,
  the survey.

Everything goes through the HTTP API and the customers' signed links (the status page's
buttons, the survey page's form), as a storefront and its customers would. The schedule is in
policy days (`FAST_DAY_SECONDS` seconds each): about a minute from start to the last survey.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console

from cli.demo import Api
from client.http import ApiClient

FAST_DAY_SECONDS = 6.0
"""A policy day in the fast demo: long enough to read each moment as it comes."""

STATUS_LINK = re.compile(r"https?://\S+/v1/status/[A-Za-z0-9_.-]+")
SURVEY_LINK = re.compile(r"https?://\S+/v1/survey/[A-Za-z0-9_.-]+")


def fast_policy(day_seconds: float = FAST_DAY_SECONDS) -> dict[str, Any]:
    """The policy the fast demo's stack runs on: every rule the customers meet, in days of
    `day_seconds` seconds."""
    return {
        "day_seconds": day_seconds,
        "delay": {"notice_lead_days": 1, "silent_consent_days": 30},
        "offer_valid_days": 3,
        "survey_after_days": 2,
        "payment": {"hold_days": 2, "reauthorize_lead_days": 0.5, "update_grace_days": 2},
        "channels": {
            "web": {
                "handling_days": 3,
                "ladder": [
                    {
                        "name": "apology",
                        "offset_days": 1,
                        "rules": [{"offers": [{"kind": "discount_code", "percent": 10}]}],
                    }
                ],
            },
            "amazon": {
                "handling_days": 2,
                "auto_cancel": {"calendar_days": 2},
                "choice_lead_days": 1,
                "ladder": [],
            },
        },
    }


@dataclass(frozen=True)
class Customer:
    role: str
    """A, B, M or P (the module's table)."""
    product: str
    channel: str
    ship_in_days: float
    payment: bool = False


CUSTOMERS = (
    Customer("A", "kettle", "web", ship_in_days=3),
    Customer("B", "kettle", "web", ship_in_days=3),
    Customer("M", "lamp", "amazon", ship_in_days=2),
    Customer("P", "mug", "web", ship_in_days=6, payment=True),
)


@dataclass(frozen=True)
class Product:
    name: str
    price: str
    on_order: int
    """Units on the supplier's purchase order, expected on `expected_day` (the lines' ETA is a
    receiving day later)."""
    expected_day: float
    arrives_day: float | None
    """When they really arrive; None: not before the end of the demo."""


PRODUCTS = {
    "kettle": Product("Gooseneck kettle", "59.00", 2, expected_day=6, arrives_day=6),
    "lamp": Product("Brass desk lamp", "89.00", 1, expected_day=5, arrives_day=None),
    "mug": Product("Stoneware mug, speckled", "14.00", 1, expected_day=4, arrives_day=4),
}
SURVEY_SCORES = {"A": 5, "B": 3, "P": 4}
MOMENTS = (
    "delay notice",
    "offer taken",
    "offer refused",
    "marketplace auto-cancel",
    "payment hold renewed",
    "survey answered",
)


@dataclass
class Played:
    """What the scenario did and saw, for the summary and for tests."""

    run_id: str
    lines: dict[str, str] = field(default_factory=dict)
    """Role -> the line's key (`backorder:{order}:1`)."""
    status_links: dict[str, str] = field(default_factory=dict)
    moments: dict[str, list[str]] = field(default_factory=dict)
    """Moment -> the roles it happened to."""
    problems: list[str] = field(default_factory=list)

    def saw(self, moment: str, role: str, console: Console, text: str) -> None:
        self.moments.setdefault(moment, []).append(role)
        console.print(f"  [bold]{role}[/] {text}")

    @property
    def missing(self) -> list[str]:
        return [moment for moment in MOMENTS if moment not in self.moments]


class Scenario:
    def __init__(self, api: Api, console: Console, run_id: str, day_seconds: float) -> None:
        self.api = api
        self.console = console
        self.day = day_seconds
        self.played = Played(run_id)
        self.began = time.monotonic()
        self.start = datetime.now(UTC)

    def at(self, days: float) -> datetime:
        return self.start + timedelta(seconds=days * self.day)

    async def sleep_until(self, days: float) -> None:
        await asyncio.sleep(max(0.0, self.began + days * self.day - time.monotonic()))

    def sku(self, product: str) -> str:
        return f"fast-{self.played.run_id}-{product}"

    def order(self, role: str) -> str:
        return f"fast-{self.played.run_id}-{role.lower()}"

    async def line(self, role: str) -> dict[str, Any] | None:
        response = await self.api.call(
            self.api.order_system,
            "GET",
            f"/v1/backorders/{self.order(role)}/1",
            expect=(200, 404),
            repeatable=True,
        )
        if response is None or response.status_code != 200:
            return None
        found: dict[str, Any] = response.json()
        return found

    async def until(
        self, role: str, what: str, check: Callable[[dict[str, Any]], bool], within_days: float
    ) -> dict[str, Any] | None:
        """The line once `check` holds; None (and a problem noted) when it did not in time."""
        deadline = time.monotonic() + within_days * self.day + 10
        while time.monotonic() < deadline:
            found = await self.line(role)
            if found is not None and check(found):
                return found
            await asyncio.sleep(min(1.0, self.day / 4))
        self.played.problems.append(f"{role}: {what} did not happen in time")
        return None

    async def play(self) -> Played:
        await self.open_catalog()
        await asyncio.gather(*(self.begin(customer) for customer in CUSTOMERS))
        await asyncio.gather(
            self.notices(),
            self.take_offer("A"),
            self.refuse_offer("B"),
            self.auto_cancel("M"),
            self.renewals("P"),
            self.deliveries(),
            *(self.survey(role, score) for role, score in SURVEY_SCORES.items()),
        )
        return self.played

    @property
    def supplier(self) -> tuple[str, ApiClient]:
        return next(iter(self.api.suppliers.items()))

    async def open_catalog(self) -> None:
        """The products, none in stock, each on a purchase order: the lines' dates come from it."""
        supplier, caller = self.supplier
        for slug, product in PRODUCTS.items():
            sku = self.sku(slug)
            body = {"name": product.name, "free_stock": 0, "price": product.price}
            await self.api.call(
                self.api.ops, "PUT", f"/v1/skus/{sku}", json=body, expect=(200, 201)
            )
            order = {
                "sku": sku,
                "quantity": product.on_order,
                "expected_at": self.at(product.expected_day).isoformat(),
            }
            await self.api.call(
                caller,
                "PUT",
                f"/v1/suppliers/{supplier}/purchase-orders/{sku}-po",
                json=order,
                expect=(200, 201),
                repeatable=True,
            )

    async def begin(self, customer: Customer) -> None:
        role = customer.role
        order = self.order(role)
        product = PRODUCTS[customer.product]
        body: dict[str, Any] = {
            "order_id": order,
            "line_id": "1",
            "sku": self.sku(customer.product),
            "quantity": 1,
            "unit_price": product.price,
            "currency": "USD",
            "channel": customer.channel,
            "customer": {"id": f"cust-{order}", "email": f"{order}@example.com"},
            "ordered_at": self.start.isoformat(),
            "ship_by": self.at(customer.ship_in_days).isoformat(),
        }
        if customer.payment:
            body["payment"] = {"reference": f"card_{order}", "captured_amount": "0"}
        started = await self.api.call(
            self.api.order_system,
            "POST",
            "/v1/backorders",
            json=body,
            expect=(200, 201),
            repeatable=True,
        )
        if started is None:
            self.played.problems.append(f"{role}: the line did not start")
            return
        self.played.lines[role] = f"backorder:{order}:1"
        first = await self.until(role, "the first message", lambda line: bool(line["messages"]), 1)
        if first is not None:
            found = STATUS_LINK.search(first["messages"][0]["body"])
            if found:
                self.played.status_links[role] = found.group(0)
        self.console.print(f"  [bold]{role}[/] ordered 1 x {product.name} on {customer.channel}")

    async def notices(self) -> None:
        for role in ("A", "B", "M"):
            found = await self.until(role, "a delay notice", _has("delay_notice"), 3)
            if found is not None:
                self.played.saw("delay notice", role, self.console, "was told of the delay")

    async def press(self, role: str, action: str, choice: str | None = None) -> int | None:
        """A button of the customer's status page, as the browser posts it."""
        link = self.played.status_links.get(role)
        if link is None:
            self.played.problems.append(f"{role}: no status link to press {action} on")
            return None
        form = {"action": action, **({"choice": choice} if choice else {})}
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                response = await http.post(link, data=form)
        except httpx.HTTPError as exc:
            self.played.problems.append(f"{role}: the status page did not answer: {exc!r}")
            return None
        return response.status_code

    async def take_offer(self, role: str) -> None:
        found = await self.until(role, "an offer", lambda line: bool(_open_offers(line)), 5)
        if found is None:
            return
        offer = _open_offers(found)[0]
        if await self.press(role, "accept_offer", offer["offer_id"]) == 303:
            await self.until(role, "the offer confirmed", _has("offer_accepted"), 1)
            self.played.saw("offer taken", role, self.console, f"took {offer['description']}")

    async def refuse_offer(self, role: str) -> None:
        found = await self.until(role, "an offer", lambda line: bool(_open_offers(line)), 5)
        if found is None:
            return
        if await self.press(role, "wait") == 303:
            self.played.saw(
                "offer refused", role, self.console, "refused the offer: keeps waiting without it"
            )

    async def auto_cancel(self, role: str) -> None:
        found = await self.until(
            role, "the marketplace's auto-cancel", lambda line: line["state"] == "cancelled", 5
        )
        if found is not None:
            self.played.saw(
                "marketplace auto-cancel",
                role,
                self.console,
                f"cancelled before the marketplace's deadline ({found['cancel_reason']}), refunded",
            )

    async def renewals(self, role: str) -> None:
        held = await self.until(
            role, "the hold from checkout", lambda line: _hold_expiry(line) is not None, 1
        )
        if held is None:
            return
        first = _hold_expiry(held)
        found = await self.until(
            role, "a hold renewed", lambda line: _hold_expiry(line) not in (None, first), 3
        )
        if found is not None:
            self.played.saw(
                "payment hold renewed",
                role,
                self.console,
                f"had the hold on their card renewed until {found['payment']['expires_at']}",
            )

    async def deliveries(self) -> None:
        supplier, caller = self.supplier
        arriving = sorted(
            (product.arrives_day, slug)
            for slug, product in PRODUCTS.items()
            if product.arrives_day is not None
        )
        for day, slug in arriving:
            await self.sleep_until(day)
            sku = self.sku(slug)
            product = PRODUCTS[slug]
            body = {
                "receipt_id": f"{sku}-r1",
                "sku": sku,
                "quantity": product.on_order,
                "po_id": f"{sku}-po",
            }
            await self.api.call(
                caller,
                "POST",
                f"/v1/suppliers/{supplier}/receipts",
                json=body,
                expect=(200, 201),
                repeatable=True,
            )
            self.console.print(f"  {product.on_order} x {product.name} arrived from {supplier}")

    async def survey(self, role: str, score: int) -> None:
        found = await self.until(role, "the survey", _has("survey"), 10)
        if found is None:
            return
        message = next(m for m in found["messages"] if m["kind"] == "survey")
        link = SURVEY_LINK.search(message["body"])
        if link is None:
            self.played.problems.append(f"{role}: the survey message has no survey link")
            return
        async with httpx.AsyncClient(timeout=30) as http:
            answered = await http.post(link.group(0), data={"score": str(score)})
        if answered.status_code == 303:
            self.played.saw(
                "survey answered", role, self.console, f"answered the survey: {score}/5"
            )


def _has(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: any(message["kind"] == kind for message in line["messages"])


def _hold_expiry(line: dict[str, Any]) -> str | None:
    """When the line's current hold lapses: a later one means it was renewed."""
    expires: str | None = (line.get("payment") or {}).get("expires_at")
    return expires


def _open_offers(line: dict[str, Any]) -> list[dict[str, Any]]:
    return [offer for offer in line["offers"] if offer["status"] == "open"]


async def play_customer_side(
    api: Api, console: Console, run_id: str, day_seconds: float = FAST_DAY_SECONDS
) -> Played:
    """Play the scenario on a stack running `fast_policy(day_seconds)`."""
    return await Scenario(api, console, run_id, day_seconds).play()
