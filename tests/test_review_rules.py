"""Rules that broke in review: refused services never strand a line, catalog updates are
idempotent, time offsets never reorder the queue, out-of-range dates are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


async def test_a_refused_message_never_holds_back_the_shipment(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    customer = {"id": "c-1", "email": "nobody@bounce.invalid", "tier": "standard"}
    await stack.start(backorder(order, sku, quantity=2, customer=customer))
    await stack.wait_state(order, "waiting")

    await stack.receive(sku, 2)
    line = await stack.finished(order)

    assert line["state"] == "shipped"
    assert line["messages"] == [], "the refused messages are not recorded as sent"
    assert len(await stack.requests("carrier", f"backorder:{order}:1")) == 1
    stack.assert_rules(sku)


async def test_the_same_stock_count_twice_is_applied_twice_and_once_under_one_key(
    stack: Stack,
) -> None:
    """A stock count is a level: sent again (a line took the units meanwhile) it sets them
    again; the same request under one Idempotency-Key is applied once."""
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    for index in range(2):
        await stack.start(backorder(f"k{index}{tag}", sku, quantity=3))
        await stack.wait_state(f"k{index}{tag}", "waiting")
    body = {"name": "Kettle", "free_stock": 3}

    ops = stack.as_("ops")
    first = await ops.put(f"/v1/skus/{sku}", json=body, idempotency_key=f"count-1{tag}")
    retried = await ops.put(f"/v1/skus/{sku}", json=body, idempotency_key=f"count-1{tag}")
    await stack.finished(f"k0{tag}")
    assert (await stack.line(f"k1{tag}"))["allocated_quantity"] == 0
    again = await ops.put(f"/v1/skus/{sku}", json=body)
    await stack.finished(f"k1{tag}")
    renamed = await ops.put(f"/v1/skus/{sku}", json={"name": "Blue kettle"})

    assert (first.status_code, retried.status_code, again.status_code) == (200, 200, 200)
    assert first.json()["allocated_to_waiting_lines"] == 3
    assert retried.json() == first.json(), "answered as the first time, not applied again"
    assert again.json()["allocated_to_waiting_lines"] == 3, "a count sent again is applied"
    assert renamed.json() | {"allocated_to_waiting_lines": 0} == {
        "sku": sku,
        "name": "Blue kettle",
        "free_stock": 0,
        "substitutes": [],
        "price": None,
        "backorder_limit": None,
        "release_at": None,
        "ship_before_release": False,
        "locations": {"main": {"free_stock": 0, "inbound": 0}},
        "stock": {"main": 0},
        "allocated_to_waiting_lines": 0,
    }
    stack.assert_rules(sku)


async def test_ship_by_offsets_are_compared_as_instants(stack: Stack) -> None:
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    ordered = datetime.now(UTC)
    day = (ordered + timedelta(days=30)).date()
    five_utc = datetime(day.year, day.month, day.day, 5, tzinfo=UTC)
    seven_utc = five_utc + timedelta(hours=2)
    # 10:00+05:00 is 05:00 UTC: earlier than 07:00 UTC although its wall clock is later.
    early = backorder(f"tz-a{tag}", sku, ordered_at=ordered, ship_by=seven_utc)
    early["ship_by"] = f"{day.isoformat()}T10:00:00+05:00"
    late = backorder(f"tz-b{tag}", sku, ordered_at=ordered, ship_by=seven_utc)
    await stack.start(late)
    await stack.start(early)
    await stack.wait_state(f"tz-a{tag}", "waiting")
    await stack.wait_state(f"tz-b{tag}", "waiting")

    await stack.receive(sku, 1)

    line = await stack.finished(f"tz-a{tag}")
    assert datetime.fromisoformat(line["ship_by"]) == five_utc
    assert (await stack.line(f"tz-b{tag}"))["allocated_quantity"] == 0


async def test_out_of_range_dates_are_refused_naming_the_field(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    now = datetime.now(UTC)
    cases = {
        "ordered_at": {"ordered_at": "9999-12-31T00:00:00Z"},
        "ship_by": {"ship_by": "9999-12-31T23:00:00-05:00"},
    }
    for field, change in cases.items():
        response = await stack.start(backorder(new_id(), sku) | change)
        assert response.status_code == 422, response.text
        assert field in response.text
    before_order = backorder(new_id(), sku, ordered_at=now, ship_by=now - timedelta(days=1))
    response = await stack.start(before_order)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "ship_by"]
    assert "must not be before ordered_at" in response.text
