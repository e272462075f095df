"""The customer's status page, driven in the system's headless Chromium (Playwright for Python,
no browser download): every message carries one signed status link; the page shows the item
by its catalog name and its state, and its buttons act through the line's Updates with the
answer shown in place. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, async_playwright

from domain.line.page import Certainty, choices_open, customer_page
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.links import LinkAction
from tests.support.browser import ARTIFACTS, HEADLESS_FLAGS, chromium_path
from tests.support.factories import backorder, new_id
from tests.support.messages import wait_for_kind
from tests.support.stack import Stack

STATUS_LINK = re.compile(r"(http://\S+/v1/status/\S+)")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def status(**extra: object) -> LineStatus:
    fields: dict[str, object] = {
        "order_id": "o1",
        "line_id": "1",
        "workflow_id": "backorder:o1:1",
        "sku": "KET-1",
        "quantity": 2,
        "unit_price": "10.00",
        "currency": "USD",
        "channel": "web",
        "customer": {"id": "c1", "email": "c1@example.com"},
        "ordered_at": NOW - timedelta(days=3),
        "ship_by": NOW + timedelta(days=2),
        "ship_policy": "partial",
        "state": "waiting",
        "allocated_quantity": 0,
        "shipped_quantity": 0,
        "consent": "none",
    }
    return LineStatus.model_validate(fields | extra)


def test_a_waiting_line_offers_wait_and_cancel_and_a_final_one_nothing() -> None:
    waiting = choices_open(status(), [], NOW)
    assert [choice.action for choice in waiting] == [LinkAction.WAIT, LinkAction.CANCEL]
    agreed = choices_open(status(consent="explicit"), [], NOW)
    assert [choice.action for choice in agreed] == [LinkAction.CANCEL]
    assert choices_open(status(state="shipped", shipped_quantity=2), [], NOW) == []
    assert choices_open(status(state="allocated", allocated_quantity=2), [], NOW) == []


def test_only_open_unexpired_offers_are_choices() -> None:
    offer = {"rung": "r1", "kind": "free_expedited_shipping", "description": "Free express"}
    line = status(
        offers=[
            offer | {"offer_id": "open", "expires_at": NOW + timedelta(days=1)},
            offer | {"offer_id": "old", "expires_at": NOW - timedelta(days=1)},
            offer
            | {"offer_id": "used", "expires_at": NOW + timedelta(days=1), "status": "accepted"},
        ]
    )
    taken = [c.choice for c in choices_open(line, [], NOW) if c.action is LinkAction.ACCEPT_OFFER]
    assert taken == ["open"]


def test_the_date_says_how_sure_it_is() -> None:
    def sure(**extra: object) -> Certainty:
        return customer_page(status(**extra), product="Kettle", substitutes=[], now=NOW).certainty

    assert sure() is Certainty.NO_DATE
    assert sure(eta=NOW + timedelta(days=1)) is Certainty.SUPPLIER_DATE
    assert sure(eta=NOW + timedelta(days=9)) is Certainty.LATE
    assert sure(state="allocated", allocated_quantity=2) is Certainty.IN_HAND


def test_a_line_paid_at_order_shows_what_was_charged_and_refunded() -> None:
    refund = {"refund_id": "r", "amount": "10.00", "currency": "USD", "quantity": 1}
    line = status(
        state=LineState.CANCELLED, refunds=[refund | {"created_at": NOW}], cancel_reason="asked"
    )
    page = customer_page(line, product="Kettle", substitutes=[], now=NOW)
    assert (page.charged, page.refunded, page.choices) == ("20.00", "10.00", [])


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """The system's Chromium under Playwright, or a skip (developer machine) / failure (CI)."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=HEADLESS_FLAGS, headless=True
        )
        yield launched
        await launched.close()


async def status_link(stack: Stack, order: str) -> str:
    confirmation = await wait_for_kind(stack, order, "backorder_confirmation")
    found = STATUS_LINK.search(confirmation["body"]["body"])
    assert found is not None, confirmation["body"]["body"]
    return found.group(1)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_a_customer_opens_the_status_link_keeps_waiting_then_cancels(
    stack: Stack, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, 0, name="Blue kettle")
    body = backorder(order, sku, 2, ship_by=datetime.now(UTC) + timedelta(days=5))
    assert (await stack.start(body)).status_code == 201
    link = await status_link(stack, order)

    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    try:
        response = await page.goto(link)
        assert response is not None and response.status == 200
        assert await page.get_attribute("html", "lang") == "en"
        assert (await page.inner_text("h1")).endswith("Blue kettle")
        assert await page.inner_text("#state") == "On backorder: waiting for stock"
        await page.screenshot(path=ARTIFACTS / "status-page-waiting.png", full_page=True)

        await page.get_by_role("button", name="Keep waiting").click()
        await page.wait_for_selector("#answer")
        assert "happy to wait" in await page.inner_text("#answer")
        assert "happy to wait" in await page.inner_text("#consent")
        assert await page.get_by_role("button", name="Keep waiting").count() == 0
        assert (await stack.line(order))["consent"] == "explicit"
        await page.screenshot(path=ARTIFACTS / "status-page-kept-waiting.png", full_page=True)

        await page.get_by_role("button", name="Cancel this item").click()
        await page.wait_for_selector("#answer")
        line = await stack.finished(order)
        assert line["state"] == "cancelled"
        await page.reload()
        assert await page.inner_text("#state") == "Cancelled"
        assert await page.get_by_role("button").count() == 0
        assert "39.98 USD" in await page.inner_text("#money")
        await page.screenshot(path=ARTIFACTS / "status-page-cancelled.png", full_page=True)

        token = link.rsplit("/", 1)[1]
        tampered = link.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
        refused = await page.goto(tampered)
        assert refused is not None and refused.status == 403
        assert "not valid" in await page.inner_text("[role=alert]")
        await page.screenshot(path=ARTIFACTS / "status-page-bad-link.png", full_page=True)
    finally:
        await page.close()
