"""Ship-complete orders: the backordered lines (and the in-stock ones) leave together, in one
shipment with one tracking number; a cancelled line lets the rest go, and they are told."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack

GIFT_WRAP = "gift-wrap"
"""An in-stock line of the orders: a catalog SKU, as every SKU a line names must be."""


def order_line(order: str, line_id: str, sku: str, quantity: int, **extra: Any) -> dict[str, Any]:
    return backorder(
        order,
        sku,
        quantity,
        line_id=line_id,
        ship_policy="complete",
        order_lines=["1", "2"],
        in_stock_lines=[{"sku": GIFT_WRAP, "quantity": 1}],
        **extra,
    )


async def test_the_order_waits_for_its_last_line_then_ships_once(stack: Stack) -> None:
    first_sku, second_sku, order = new_id("sku"), new_id("sku"), new_id()
    await stack.put_sku(GIFT_WRAP, free_stock=None)
    await stack.put_sku(first_sku)
    await stack.put_sku(second_sku)
    await stack.start(order_line(order, "1", first_sku, 1))
    await stack.start(order_line(order, "2", second_sku, 2))
    await stack.wait_state(order, "waiting", line_id="1")
    await stack.wait_state(order, "waiting", line_id="2")

    await stack.receive(first_sku, 1)
    await stack.wait_state(order, "allocated", line_id="1")
    await asyncio.sleep(0.5)  # long enough for a wrong early shipment
    assert (await stack.line(order, "1"))["shipments"] == []
    await stack.receive(second_sku, 2)
    first = await stack.finished(order, "1")
    second = await stack.finished(order, "2")

    booked = await stack.requests("carrier", f"order:{order}")
    assert len(booked) == 1, "one shipment for the whole order"
    items = {item["sku"]: item["quantity"] for item in booked[0]["body"]["items"]}
    assert items == {first_sku: 1, second_sku: 2, GIFT_WRAP: 1}
    tracking = booked[0]["response"]["tracking_number"]
    assert [s["tracking_number"] for s in first["shipments"] + second["shipments"]] == [
        tracking,
        tracking,
    ]
    for line_id in ("1", "2"):
        assert await stack.requests("carrier", f"backorder:{order}:{line_id}") == []
    stack.assert_rules(first_sku, second_sku)


async def test_cancelling_one_line_lets_the_rest_ship_and_tells_the_customer(
    stack: Stack,
) -> None:
    first_sku, second_sku, order = new_id("sku"), new_id("sku"), new_id()
    await stack.put_sku(GIFT_WRAP, free_stock=None)
    await stack.put_sku(first_sku)
    await stack.put_sku(second_sku)
    await stack.start(order_line(order, "1", first_sku, 1))
    await stack.start(order_line(order, "2", second_sku, 2))
    await stack.wait_state(order, "waiting", line_id="2")
    await stack.receive(first_sku, 1)
    await stack.wait_state(order, "allocated", line_id="1")

    cancelled = await stack.api.post(
        f"/v1/backorders/{order}/2/cancel", headers=stack.auth("order")
    )
    kept = await stack.finished(order, "1")

    assert cancelled.status_code == 200, cancelled.text
    assert kept["state"] == "shipped"
    kinds = [message["kind"] for message in kept["messages"]]
    assert "order_update" in kinds
    update = next(m for m in kept["messages"] if m["kind"] == "order_update")
    assert "Line 2" in update["body"] and "cancelled" in update["body"]
    booked = await stack.requests("carrier", f"order:{order}")
    assert len(booked) == 1
    assert {item["sku"] for item in booked[0]["body"]["items"]} == {first_sku, GIFT_WRAP}
    assert len(await stack.requests("payments", f"backorder:{order}:2")) == 1
    stack.assert_rules(first_sku, second_sku)


async def test_order_lines_need_ship_complete_and_their_own_line(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)

    partial = await stack.start(order_line(new_id(), "1", sku, 1) | {"ship_policy": "partial"})
    foreign = await stack.start(order_line(new_id(), "3", sku, 1))

    assert partial.status_code == 422 and "ship_policy" in partial.text
    assert foreign.status_code == 422 and "order_lines" in foreign.text


async def test_a_line_whose_order_partner_never_started_can_still_be_cancelled(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(GIFT_WRAP, free_stock=None)
    await stack.put_sku(sku)
    body = backorder(order, sku, ship_policy="complete", order_lines=["1", "2"])
    assert (await stack.start(body)).status_code == 201
    await stack.wait_state(order, "waiting")

    cancelled = await stack.cancel(order)
    line = await stack.wait_line(order, lambda line: line["state"] == "cancelled", within=15)

    assert cancelled.status_code in (200, 202)
    assert line["cancelled_by"] == "order_system"
