"""Payments end to end, on each store: a line started with payment terms is charged as it ships,
released when cancelled, keeps its hold alive, and asks for another payment method when a
renewal is declined. Every rule is read from the payments simulator's records to the cent, by
the same checker the chaos tests use (`tests.support.chaos.find_problems`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from tests.support.chaos import fetch_records, find_problems, read_store
from tests.support.factories import backorder, new_id
from tests.support.messages import links, wait_for_kind
from tests.support.poll import eventually
from tests.support.stack import Stack


def terms(**extra: Any) -> dict[str, Any]:
    return {"reference": f"card_{new_id('pm')}", **extra}


async def money_problems(stack: Stack, *orders: str) -> list[str]:
    keys = [f"backorder:{order}:1" for order in orders]
    records = await fetch_records(str(stack.sims.base_url).rstrip("/"))
    store = await asyncio.to_thread(read_store, stack.db, keys)
    return find_problems(records, store)


async def payments(stack: Stack, order: str, path: str) -> list[dict[str, Any]]:
    rows = await stack.requests("payments", f"backorder:{order}:1")
    return [row for row in rows if row["path"] == path]


async def test_an_authorized_line_is_charged_shipment_by_shipment_and_no_more(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, 3, unit_price="12.50", payment=terms(captured_amount="0"))
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")
    assert (await stack.line(order))["payment"]["state"] == "authorized"
    await stack.receive(sku, 1)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 1)
    await stack.receive(sku, 2)
    line = await stack.finished(order)
    captures = await payments(stack, order, "/captures")
    assert [
        (row["idempotency_key"].rsplit(":", 1)[-1], row["body"]["amount"]) for row in captures
    ] == [
        ("1", "12.50"),
        ("2", "25.00"),
    ]
    assert line["payment"] | {"expires_at": None} == {
        "reference": body["payment"]["reference"],
        "amount": "37.50",
        "captured": "37.50",
        "voided": "0.00",
        "refunded": "0.00",
        "currency": "USD",
        "expires_at": None,
        "state": "captured",
    }
    assert await money_problems(stack, order) == []


async def test_a_deposit_line_cancelled_after_a_part_shipped_gets_back_only_the_rest(
    stack: Stack,
) -> None:
    """4 x 10.00 with a deposit of 25.00: one unit ships (the deposit covers it), then the line
    is cancelled: the hold of 15.00 is voided and 15.00 of the deposit refunded."""
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, 4, unit_price="10.00", payment=terms(captured_amount="25.00"))
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")
    await stack.receive(sku, 1)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 1)
    assert (await stack.cancel(order)).status_code in (200, 202)
    line = await stack.finished(order)
    assert await payments(stack, order, "/captures") == []
    assert [row["body"]["amount"] for row in await payments(stack, order, "/voids")] == ["15.00"]
    assert [row["body"]["amount"] for row in await payments(stack, order, "/refunds")] == ["15.00"]
    assert (line["payment"]["state"], line["payment"]["refunded"]) == ("refunded", "15.00")
    assert await money_problems(stack, order) == []


async def test_an_authorized_line_cancelled_before_it_ships_is_voided_and_told_so(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, 2, payment=terms(captured_amount="0"))
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")
    cancelled = await stack.cancel(order)
    assert cancelled.status_code in (200, 202)
    line = await stack.finished(order)
    assert await payments(stack, order, "/refunds") == []
    assert [row["body"]["amount"] for row in await payments(stack, order, "/voids")] == ["39.98"]
    assert line["payment"]["state"] == "voided"
    message = await wait_for_kind(stack, order, "cancelled_refunded")
    assert "Nothing was charged" in message["body"]["body"]
    assert await money_problems(stack, order) == []


async def test_a_prepaid_line_with_terms_is_refunded_what_did_not_ship(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, 3, unit_price="7.00", payment=terms())
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")
    await stack.receive(sku, 1)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 1)
    await stack.cancel(order)
    line = await stack.finished(order)
    assert await payments(stack, order, "/voids") == []
    assert [row["body"]["amount"] for row in await payments(stack, order, "/refunds")] == ["14.00"]
    assert line["payment"]["state"] == "refunded"
    assert await money_problems(stack, order) == []


async def start_fast(stack: Stack, order: str, sku: str, reference: str) -> None:
    """A line on the fast policy (a day is a second: holds of 7 s, renewed 1 s before they
    lapse, 3 s to give another method) whose hold from checkout lapses in 3 s."""
    now = datetime.now(UTC)
    body = backorder(
        order,
        sku,
        1,
        ordered_at=now,
        ship_by=now + timedelta(minutes=10),
        payment={
            "reference": reference,
            "captured_amount": "0",
            "expires_at": (now + timedelta(seconds=3)).isoformat(),
        },
    )
    started = await stack.fast.post("/v1/backorders", json=body, headers=stack.auth("order"))
    assert started.status_code == 201, started.text


async def test_holds_are_renewed_before_they_lapse_and_the_newest_is_charged(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await start_fast(stack, order, sku, f"card_{order}")

    async def renewed() -> list[dict[str, Any]]:
        return await payments(stack, order, "/authorizations")

    holds = await eventually(renewed, lambda rows: len(rows) >= 2, within=30, what="two renewals")
    before = (await stack.line(order))["payment"]
    assert before["state"] == "authorized"
    assert before["reference"] == holds[-1]["response"]["authorization_id"] or len(holds) > 2
    await stack.receive(sku, 1)
    line = await stack.finished(order)
    captures = await payments(stack, order, "/captures")
    granted = {row["response"]["authorization_id"] for row in await renewed()}
    assert len(captures) == 1 and captures[0]["body"]["authorization_id"] in granted
    replaced = await payments(stack, order, "/voids")
    assert all(row["body"]["reason"].startswith("replaced") for row in replaced)
    assert line["payment"]["state"] == "captured"
    assert await money_problems(stack, order) == []


async def test_a_declined_renewal_asks_for_another_method_which_then_pays(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await start_fast(stack, order, sku, f"card_decline_{order}")
    message = await wait_for_kind(stack, order, "payment_update_request")
    token = links(message)[("update_payment", None)]
    page = await stack.api.get(f"/v1/links/{token}")
    assert page.status_code == 200 and 'name="reference"' in page.text
    declined = await stack.api.post(f"/v1/links/{token}", json={"reference": "card_decline_2"})
    assert declined.status_code == 402, declined.text
    # The page's own form, as a browser without JavaScript posts it.
    async with httpx.AsyncClient(base_url=str(stack.api.base_url)) as browser:
        taken = await browser.post(f"/v1/links/{token}", data={"reference": f"card_new_{order}"})
    assert taken.status_code == 200, taken.text
    assert taken.json()["payment"]["state"] == "authorized"
    await stack.receive(sku, 1)
    line = await stack.finished(order)
    assert line["payment"]["state"] == "captured"
    assert Decimal(line["payment"]["captured"]) == Decimal(line["unit_price"])
    assert await money_problems(stack, order) == []


async def test_without_another_method_the_line_is_cancelled_with_nothing_charged(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await start_fast(stack, order, sku, f"card_decline_{order}")
    line = await stack.finished(order, within=40)
    assert (line["state"], line["cancelled_by"]) == ("cancelled", "policy")
    assert line["payment"]["state"] == "voided"
    assert await payments(stack, order, "/captures") == []
    assert await payments(stack, order, "/refunds") == []
    message = await wait_for_kind(stack, order, "cancelled_refunded")
    assert "Nothing was charged" in message["body"]["body"]
    assert await money_problems(stack, order) == []


async def test_money_figures_count_what_moved(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, 2, unit_price="5.00", payment=terms(captured_amount="0"))
    before = (await stack.api.get("/v1/metrics", headers=stack.auth("ops"))).json()["money"]
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")
    await stack.cancel(order)
    await stack.finished(order)
    after = (await stack.api.get("/v1/metrics", headers=stack.auth("ops"))).json()["money"]
    voided = Decimal(after["voided"].get("USD", "0")) - Decimal(before["voided"].get("USD", "0"))
    assert voided == Decimal("10.00")
    assert after["cancel_to_money_back"]["count"] == before["cancel_to_money_back"]["count"] + 1
    scrape = await stack.api.get("/metrics", headers=stack.auth("ops"))
    assert 'backorders_money_voided_total{currency="USD"}' in scrape.text
