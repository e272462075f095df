"""Arrivals split over the queue: partial fills, priority order, duplicates, hold for complete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tests.support.factories import backorder, hours_ago, new_id
from tests.support.stack import Stack


def shipped_all_of(quantity: int) -> Callable[[dict[str, Any]], bool]:
    """The line was allocated exactly `quantity` units and has shipped them."""

    def check(line: dict[str, Any]) -> bool:
        return bool(line["allocated_quantity"] == line["shipped_quantity"] == quantity)

    return check


async def test_partial_arrivals_across_several_receipts_ship_each_part(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    assert (await stack.start(backorder(order, sku, quantity=5))).status_code == 201
    await stack.wait_state(order, "waiting")

    await stack.receive(sku, 3)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 3)
    await stack.receive(sku, 1)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 4)
    await stack.receive(sku, 4)  # one more than the line still needs
    line = await stack.finished(order)

    assert line["state"] == "shipped"
    assert [shipment["quantity"] for shipment in line["shipments"]] == [3, 1, 1]
    assert line["allocated_quantity"] == 5
    kinds = [message["kind"] for message in line["messages"]]
    # Nothing inbound dated it: its first message was the delay-option notice.
    assert kinds == ["delay_notice", "partially_shipped", "partially_shipped", "shipped"]
    sku_row = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert sku_row["free_stock"] == 3, "the surplus of the last receipt stays free"


async def test_complete_ship_policy_holds_a_partial_allocation_until_whole(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=5, ship_policy="complete"))
    await stack.wait_state(order, "waiting")

    await stack.receive(sku, 3)
    line = await stack.wait_state(order, "partially_allocated")
    await asyncio.sleep(0.5)  # long enough for a wrong shipment to have been made
    line = await stack.line(order)
    assert line["allocated_quantity"] == 3
    assert line["shipments"] == []

    await stack.receive(sku, 2)
    line = await stack.finished(order)
    assert [shipment["quantity"] for shipment in line["shipments"]] == [5]


async def test_arrival_goes_to_waiting_lines_by_ship_by_then_ordered_at_then_line_id(
    stack: Stack,
) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    base = hours_ago(48)
    # (order, ship_by offset hours, ordered_at offset hours); the expected service order is
    # late-ordered-but-urgent first, then by ordered-at, then by line key.
    lines = [
        ("p-d", 30, 3),
        ("p-a", 10, 5),
        ("p-c", 20, 1),
        ("p-b", 20, 1),
        ("p-e", 20, 0),
    ]
    tag = new_id("")
    for order, ship_by_h, ordered_h in lines:
        body = backorder(
            f"{order}{tag}",
            sku,
            quantity=2,
            ordered_at=base + timedelta(hours=ordered_h),
            ship_by=base + timedelta(hours=ship_by_h + 100),
        )
        assert (await stack.start(body)).status_code == 201
    for order, *_ in lines:
        await stack.wait_state(f"{order}{tag}", "waiting")

    await stack.receive(sku, 7)  # three lines in full, the fourth gets one of two

    expected = {"p-a": 2, "p-e": 2, "p-b": 2, "p-c": 1, "p-d": 0}
    for order, allocated in expected.items():
        line = await stack.wait_line(f"{order}{tag}", shipped_all_of(allocated))
        assert line["allocated_quantity"] == allocated
    # Nothing reached the last line while one ahead of it still waits.
    await asyncio.sleep(0.3)
    assert (await stack.line(f"p-d{tag}"))["allocated_quantity"] == 0


async def test_priority_order_holds_across_many_waiting_lines(stack: Stack) -> None:
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    base = hours_ago(24)
    count = 30
    # Started in reverse order of ship-by, so insertion order is the wrong answer.
    for index in reversed(range(count)):
        body = backorder(
            f"m{index:02d}{tag}", sku, ordered_at=base, ship_by=base + timedelta(hours=index + 72)
        )
        assert (await stack.start(body)).status_code == 201
    for index in range(count):
        await stack.wait_state(f"m{index:02d}{tag}", "waiting")

    await stack.receive(sku, 12)

    for index in range(count):
        want = 1 if index < 12 else 0
        line = await stack.wait_line(f"m{index:02d}{tag}", shipped_all_of(want))
        assert line["allocated_quantity"] == want, f"line {index}"


async def test_a_duplicate_receipt_is_counted_once(stack: Stack) -> None:
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    for index in range(3):
        await stack.start(backorder(f"d{index}{tag}", sku, quantity=2))
    for index in range(3):
        await stack.wait_state(f"d{index}{tag}", "waiting")
    receipt_id = new_id("rcpt")

    first = await stack.receive(sku, 2, receipt_id=receipt_id)
    again = await asyncio.gather(*(stack.receive(sku, 2, receipt_id=receipt_id) for _ in range(3)))
    clash = await stack.receive(sku, 5, receipt_id=receipt_id)

    assert first.status_code == 201, first.text
    assert [response.status_code for response in again] == [200, 200, 200]
    assert clash.status_code == 409
    await stack.finished(f"d0{tag}")
    await asyncio.sleep(0.3)
    assert (await stack.line(f"d1{tag}"))["allocated_quantity"] == 0
    assert (await stack.line(f"d2{tag}"))["allocated_quantity"] == 0
    sku_row = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert sku_row["free_stock"] == 0
