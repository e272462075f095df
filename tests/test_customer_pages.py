"""The customer's status page, driven in the system's headless Chromium (Playwright for Python,
no browser download): every message carries one signed status link; the page shows the item
by its catalog name and its state, and its buttons act through the line's Updates with the
answer shown in place. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

import api
from activities.messages import TemplateProblem
from api.pages import check_pages, page
from domain.contract.lines import line_key
from domain.line.choices import SubstituteOption
from domain.line.page import Certainty, choices_open, customer_page
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.links import LinkAction, page_claims, sign
from domain.policy import ServicePolicy
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


def test_an_in_stock_substitute_is_a_choice_named_by_the_catalog() -> None:
    teapot = SubstituteOption(sku="TEA-2", name="Green teapot", free_stock=3, price="12.00")
    found = choices_open(status(), [teapot], NOW)
    assert [(c.action, c.choice, c.substitute) for c in found if c.substitute] == [
        (LinkAction.SUBSTITUTE, "TEA-2", teapot)
    ]


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
    """The status link of a line's first message: nothing inbound dates these lines, so the
    delay-option notice."""
    notice = await wait_for_kind(stack, order, "delay_notice")
    found = STATUS_LINK.search(notice["body"]["body"])
    assert found is not None, notice["body"]["body"]
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
        assert "$39.98" in await page.inner_text("#money")  # Babel, for the customer's locale
        await page.screenshot(path=ARTIFACTS / "status-page-cancelled.png", full_page=True)

        token = link.rsplit("/", 1)[1]
        tampered = link.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
        refused = await page.goto(tampered)
        assert refused is not None and refused.status == 403
        assert "not valid" in await page.inner_text("[role=alert]")
        await page.screenshot(path=ARTIFACTS / "status-page-bad-link.png", full_page=True)
    finally:
        await page.close()


def survey_link(stack: Stack, order: str, ordered_at: datetime) -> str:
    """The link the survey message carries (the message itself is tested over stub activities
    in tests/workflows/test_line_survey.py and in the demo's test)."""
    claims = page_claims(line_key(order, "1"), LinkAction.SURVEY, ordered_at)
    return f"{stack.settings.link_base}/v1/survey/{sign(stack.settings.signing_key, claims)}"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_a_customer_answers_the_survey_once_and_the_score_is_in_the_metrics(
    stack: Stack, browser: Browser
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, 1, name="Green teapot")
    ordered_at = datetime.now(UTC)
    body = backorder(order, sku, 1, ordered_at=ordered_at, channel="etsy")
    assert (await stack.start(body)).status_code == 201
    await stack.finished(order)
    link = survey_link(stack, order, ordered_at)

    page = await browser.new_page(viewport={"width": 390, "height": 844})
    try:
        await page.goto(link)
        assert "Green teapot" in await page.inner_text("h1")
        await page.get_by_label("4", exact=True).check()
        await page.get_by_label("Anything you would like to tell us").fill("Worth the wait.")
        await page.screenshot(path=ARTIFACTS / "survey-page.png", full_page=True)
        await page.get_by_role("button", name="Send my answer").click()
        await page.wait_for_selector("#answer")
        assert "4 out of 5" in await page.inner_text("#answer")
        await page.screenshot(path=ARTIFACTS / "survey-page-answered.png", full_page=True)
    finally:
        await page.close()

    async with httpx.AsyncClient(timeout=30) as http:
        again = await http.post(link, data={"score": "1"})
        assert again.status_code == 409
        assert "already answered" in again.text
        tampered = await http.post(link[:-3] + "AAA", data={"score": "1"})
        assert tampered.status_code == 403
        malformed = await http.get(f"{stack.settings.link_base}/v1/status/not-a-link")
        assert malformed.status_code == 403 and "not valid" in malformed.text
        assert malformed.headers["content-type"].startswith("text/html")
    metrics = (await stack.api.get("/v1/metrics", headers=stack.auth("ops"))).json()
    assert metrics["by_channel"]["etsy"]["survey_score"] == 4.0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_sales_per_channel_and_day_give_the_backorder_rate(stack: Stack) -> None:
    day = (datetime.now(UTC) - timedelta(days=40)).replace(hour=12)
    sku = new_id("sku")
    await stack.put_sku(sku)
    for _ in range(2):
        order = new_id()
        assert (
            await stack.start(backorder(order, sku, ordered_at=day, channel="ebay"))
        ).status_code == 201
        await stack.wait_line(order, lambda line: line["state"] != "received")
    orders = stack.as_("order")
    path = f"/v1/sales/ebay/{day.date().isoformat()}"
    assert (await orders.put(path, json={"order_lines": 10})).status_code == 201
    assert (await orders.put(path, json={"order_lines": 8})).status_code == 200
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    ahead = await orders.put(f"/v1/sales/ebay/{future}", json={"order_lines": 1})
    assert ahead.status_code == 422 and ahead.json()["detail"][0]["loc"] == ["path", "day"]
    negative = await orders.put(path, json={"order_lines": -1})
    assert negative.status_code == 422 and negative.json()["detail"][0]["loc"][-1] == "order_lines"
    metrics = (await stack.api.get("/v1/metrics", headers=stack.auth("ops"))).json()
    assert metrics["by_channel"]["ebay"]["backorder_rate"]["rate"] == 0.25
    exposition = (await stack.api.get("/metrics", headers=stack.auth("ops"))).text
    assert 'backorders_backorder_ratio{channel="ebay"} 0.25' in exposition


def rendered(line: LineStatus, locale: str, folder: Path | None = None) -> str:
    found = customer_page(line, product="Kettle", substitutes=[], now=NOW, locale=locale)
    shown = page(
        "status.html",
        folder=folder,
        locale=found.locale,
        page=found,
        action="/s",
        done=None,
        error=None,
    )
    return bytes(shown.body).decode()


def test_the_status_page_speaks_the_customers_language_with_its_dates_and_money() -> None:
    line = status(eta=NOW + timedelta(days=1), customer={"id": "c", "email": "c@example.com"})
    english, german, austrian = (rendered(line, tag) for tag in ("en", "de", "de-AT"))
    assert '<html lang="en">' in english and "On backorder: waiting for stock" in english
    assert "Tuesday, December 1, 2026" in english and "$20.00" in english
    assert '<html lang="de">' in german and "Nachbestellt: wartet auf Ware" in german
    assert "Dienstag, 1. Dezember 2026" in german and "20,00\xa0$" in german
    assert "Diesen Artikel stornieren" in german and "Cancel" not in german
    assert '<html lang="de-AT">' in austrian and "Nachbestellt" in austrian
    # A language without words of its own reads English, dates and money included.
    assert rendered(line, "pt-BR") == english


def test_a_sellers_folder_words_the_page_file_by_file(tmp_path: Path) -> None:
    shipped = Path(api.__file__).parent / "templates" / "en" / "status.html"
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "status.html").write_text(
        shipped.read_text().replace("On backorder: waiting for stock", "Still on its way to us")
    )
    line = status()
    assert "Still on its way to us" in rendered(line, "en", tmp_path)
    assert "Nachbestellt: wartet auf Ware" in rendered(line, "de", tmp_path)  # theirs: en only


def test_a_broken_page_template_of_the_sellers_is_named_at_start(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "status.html").write_text('{% set order = "Bestellung" %}\n{{ nope(')
    with pytest.raises(TemplateProblem) as broken:
        check_pages(tmp_path, ServicePolicy.model_validate({}))
    assert str(broken.value).startswith(f"{tmp_path / 'de' / 'status.html'}, line 2:")
    assert check_pages(None, ServicePolicy.model_validate({})) > 0
