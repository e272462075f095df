"""A backordered line from sold to shipped, through the API, on real parts."""

from __future__ import annotations

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


async def test_line_waits_for_a_receipt_then_ships_with_tracking(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, free_stock=0)

    started = await stack.start(backorder(order, sku, quantity=2))
    assert started.status_code == 201, started.text
    line = await stack.wait_state(order, "waiting")
    assert line["allocated_quantity"] == 0
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)

    received = await stack.receive(sku, 2)
    assert received.status_code == 201, received.text
    line = await stack.finished(order)

    assert line["state"] == "shipped"
    assert line["allocated_quantity"] == 2
    assert line["shipped_quantity"] == 2
    [shipment] = line["shipments"]
    assert shipment["quantity"] == 2
    assert shipment["tracking_number"]
    kinds = [message["kind"] for message in line["messages"]]
    assert kinds == ["delay_notice", "shipped"]
    assert shipment["tracking_number"] in line["messages"][1]["body"]

    key = f"backorder:{order}:1"
    carrier = await stack.requests("carrier", key)
    assert [row["body"]["quantity"] for row in carrier] == [2]
    assert carrier[0]["idempotency_key"] == f"{key}:shipment:1"
    notifications = await stack.requests("notifications", key)
    assert [row["body"]["kind"] for row in notifications] == ["delay_notice", "shipped"]
    # No supply inbound: no date has a basis, so the first message is the option notice, and
    # it names no expected date.
    notice = notifications[0]["body"]["body"]
    assert "cannot give you a new date" in notice and "right to cancel" in notice
    assert "Expected ship date" not in notice and "expect to ship" not in notice
    assert await stack.requests("payments", key) == []


async def test_line_with_free_stock_ships_at_once_without_a_backorder_notice(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, free_stock=5)

    assert (await stack.start(backorder(order, sku, quantity=3))).status_code == 201
    line = await stack.finished(order)

    assert line["state"] == "shipped"
    assert [message["kind"] for message in line["messages"]] == ["shipped"]
    sku_row = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert sku_row["free_stock"] == 2
