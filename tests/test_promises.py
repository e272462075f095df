"""Promises kept, on the real dev server with policies in seconds (tests.support FAST_POLICY:
a policy day is one second, the notice lead 2 s, offers valid 4 s, Amazon cancels 7 s after
ship-by). Times are asserted from the simulators' records of what left the service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.support.factories import new_id
from tests.support.messages import at, kinds, links, sent, set_eta, start_fast, wait_for_kind
from tests.support.stack import Stack


async def test_no_date_notice_then_rung_then_cancel_at_the_deadline_each_once(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    ship_by = await start_fast(stack, order, sku, ship_in=5, unit_price="8.00", quantity=2)

    line = await stack.finished(order, within=30)

    messages = await sent(stack, order)
    # Nothing inbound dates the line: no date has a basis, so its first message is the notice,
    # at once, not a confirmation and a notice a notice lead before ship-by.
    assert kinds(messages) == ["delay_notice", "apology_offer", "cancelled_refunded"]
    notice, apology, cancelled = messages
    lead = timedelta(seconds=2)
    assert at(notice) < ship_by - lead
    assert "no delivery of it is scheduled yet" in notice["body"]["body"]
    assert ship_by - timedelta(seconds=1) <= at(apology) < ship_by
    assert at(cancelled) >= ship_by
    assert "cannot give you a new date" in notice["body"]["body"]
    assert ("cancel", None) in links(notice) and ("wait", None) in links(notice)
    assert line["state"] == "cancelled"
    payments = await stack.requests("payments", f"backorder:{order}:1")
    assert [row["body"]["amount"] for row in payments] == ["16.00"]


async def test_silence_is_consent_at_thirty_days_but_not_one_day_more(stack: Stack) -> None:
    """Supply inbound dates each line past its ship-by: its first message is the notice with
    that revised date."""
    sku, within, beyond = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku)
    ship_by = await start_fast(stack, within, sku, ship_in=5, eta_in=5 + 30)
    await start_fast(stack, beyond, sku, ship_in=5, eta_in=5 + 31)

    cancelled = await stack.finished(beyond, within=30)
    waiting = await stack.line(within)

    assert cancelled["state"] == "cancelled"
    assert waiting["state"] == "waiting"
    assert waiting["consent"] == "implied"
    assert waiting["next_action"] == "send a delay-option notice"  # the renewed one
    notice = await wait_for_kind(stack, within, "delay_notice")
    assert kinds(await sent(stack, within))[0] == "delay_notice"
    assert "you need do nothing" in notice["body"]["body"]
    assert at(await wait_for_kind(stack, beyond, "cancelled_refunded")) >= ship_by
    assert len(await stack.requests("payments", f"backorder:{beyond}:1")) == 1
    assert await stack.requests("payments", f"backorder:{within}:1") == []


async def test_a_renewed_notice_precedes_the_revised_date_and_silence_cancels(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    start = datetime.now(UTC)
    ship_by = await start_fast(stack, order, sku, ship_in=5, eta_in=9)
    revised = start + timedelta(seconds=9)
    first = await wait_for_kind(stack, order, "delay_notice")
    assert "you need do nothing" in first["body"]["body"]  # 9 s is within the 30 s window
    await set_eta(stack, order, start + timedelta(seconds=30))  # the supplier slips again

    line = await stack.finished(order, within=30)

    messages = await sent(stack, order)
    notices = [m for m in messages if m["body"]["kind"] == "delay_notice"]
    assert len(notices) == 2
    assert "Another delay" in notices[1]["body"]["body"]
    assert "If we do not hear from you by then, we will cancel" in notices[1]["body"]["body"]
    assert at(notices[1]) < revised
    # The first new date is told on its own; the second came within the quiet period after
    # the notice and went out in the next message due, the apology (one message per moment).
    assert kinds(messages).count("eta_update") == 1
    assert line["state"] == "cancelled"
    assert at(messages[-1]) >= revised > ship_by
    assert len(await stack.requests("payments", f"backorder:{order}:1")) == 1


async def test_marketplace_line_is_asked_then_cancelled_at_its_auto_cancel(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    ship_by = await start_fast(stack, order, sku, ship_in=4, channel="amazon")
    notice = await wait_for_kind(stack, order, "delay_notice")
    wait_token = links(notice)[("wait", None)]
    agreed = await stack.api.post(f"/v1/links/{wait_token}")
    assert agreed.status_code == 200, agreed.text

    line = await stack.finished(order, within=30)

    messages = await sent(stack, order)
    assert kinds(messages) == ["delay_notice", "choice_request", "cancelled_refunded"]
    auto_cancel = ship_by + timedelta(seconds=7)
    assert auto_cancel - timedelta(seconds=2) <= at(messages[1]) < auto_cancel
    assert at(messages[2]) >= auto_cancel
    assert line["cancel_reason"] == "not shipped before the marketplace's deadline"
    assert len(await stack.requests("payments", f"backorder:{order}:1")) == 1


async def test_free_expedited_offer_makes_the_shipment_expedited(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    vip = {"id": "c-vip", "email": "vip@example.com", "tier": "vip"}
    await start_fast(stack, order, sku, ship_in=4, eta_in=14, customer=vip)
    apology = await wait_for_kind(stack, order, "apology_offer")
    offered = links(apology)

    taken = await stack.api.post(f"/v1/links/{offered[('accept_offer', 'apology-1')]}")
    again = await stack.api.post(f"/v1/links/{offered[('accept_offer', 'apology-1')]}")
    sibling = await stack.api.post(f"/v1/links/{offered[('accept_offer', 'apology-2')]}")
    await stack.receive(sku, 1)
    line = await stack.finished(order, within=30)

    assert taken.status_code == 200, taken.text
    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert sibling.status_code == 409 and "another offer" in sibling.json()["detail"]
    assert [shipment["expedited"] for shipment in line["shipments"]] == [True]
    carrier = await stack.requests("carrier", f"backorder:{order}:1")
    assert [row["body"]["service_level"] for row in carrier] == ["expedited"]
    outreach = await stack.api.get("/v1/outreach", headers=stack.auth("ops"))
    assert f"backorder:{order}:1" in [task["line_key"] for task in outreach.json()]


async def test_a_discount_offer_issues_exactly_one_code(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await start_fast(stack, order, sku, ship_in=4, eta_in=14)
    apology = await wait_for_kind(stack, order, "apology_offer")
    token = links(apology)[("accept_offer", "apology-1")]

    clicks = await asyncio.gather(*(stack.api.post(f"/v1/links/{token}") for _ in range(4)))

    assert sorted(click.status_code for click in clicks) == [200, 409, 409, 409]
    codes = await stack.requests("storefront", f"backorder:{order}:1")
    assert len(codes) == 1
    accepted = await wait_for_kind(stack, order, "offer_accepted")
    assert codes[0]["response"]["code"] in accepted["body"]["body"]
    line = await stack.line(order)
    assert line["consent"] == "explicit"
    assert [offer["status"] for offer in line["offers"]] == ["accepted"]


async def test_expired_foreign_tampered_and_unknown_offers_are_refused(stack: Stack) -> None:
    sku, mine, other = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku)
    await start_fast(stack, mine, sku, ship_in=4, eta_in=14)
    await start_fast(stack, other, sku, ship_in=4, eta_in=14)
    token = links(await wait_for_kind(stack, mine, "apology_offer"))[("accept_offer", "apology-1")]
    await wait_for_kind(stack, other, "apology_offer")

    foreign = await stack.api.post(
        f"/v1/backorders/{other}/1/offers/apology-1/accept?token={token}"
    )
    tampered = await stack.api.post(f"/v1/links/{token[:-2]}xx")
    unknown = await stack.api.post(
        f"/v1/backorders/{mine}/1/offers/apology-9/accept", headers=stack.auth("ops")
    )
    offer = (await stack.line(mine))["offers"][0]
    await asyncio.sleep(
        max(0.0, (datetime.fromisoformat(offer["expires_at"]) - datetime.now(UTC)).total_seconds())
        + 0.3
    )
    expired = await stack.api.post(f"/v1/links/{token}")

    assert foreign.status_code == 403 and "another order line" in foreign.json()["detail"]
    assert tampered.status_code == 403 and "not valid" in tampered.json()["detail"]
    assert unknown.status_code == 404 and "could not find this offer" in unknown.json()["detail"]
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]
    assert [o["status"] for o in (await stack.line(mine))["offers"]] == ["open"]
    assert [o["status"] for o in (await stack.line(other))["offers"]] == ["open"]
    assert await stack.requests("storefront", f"backorder:{mine}:1") == []


async def test_status_shows_the_next_deadline_and_what_happens_then(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    ship_by = await start_fast(stack, order, sku, ship_in=30)

    line = await stack.line(order)

    assert datetime.fromisoformat(line["ship_by"]) == ship_by.replace(
        microsecond=ship_by.microsecond
    )
    # Nothing inbound dates it: the notice went out at its start; next, the apology rung.
    assert [message["kind"] for message in line["messages"]] == ["delay_notice"]
    assert datetime.fromisoformat(line["next_deadline"]) == ship_by - timedelta(seconds=1)
    assert line["next_action"] == "apologise with a goodwill offer"
    assert line["escalation_level"] == 1
    assert Decimal(line["unit_price"]) == Decimal("19.99")
    await stack.api.post(f"/v1/backorders/{order}/1/cancel", headers=stack.auth("order"))


async def test_a_delay_notice_offers_in_stock_substitutes_that_the_customer_can_take(
    stack: Stack,
) -> None:
    sku, alt, order = new_id("sku"), new_id("alt"), new_id()
    await stack.put_sku(alt, free_stock=3)
    await stack.put_sku(sku, substitutes=[alt])
    await start_fast(stack, order, sku, ship_in=4, eta_in=10)
    notice = await wait_for_kind(stack, order, "delay_notice")

    token = links(notice)[("substitute", alt)]
    taken = await stack.api.post(f"/v1/links/{token}")
    line = await stack.finished(order, within=30)

    assert f"({alt})" in notice["body"]["body"]
    assert taken.status_code == 200, taken.text
    assert line["sku"] == alt and line["state"] == "shipped"
    stack.assert_rules(sku, alt)
