"""Cancelling before shipping: held stock to the next line, one full refund, nothing lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from tests.support.factories import backorder, hours_ago, new_id
from tests.support.stack import Stack


async def test_cancel_of_a_waiting_line_refunds_in_full_once(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=3, unit_price="12.50"))
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)

    cancelled = await stack.cancel(order)
    again = await stack.cancel(order)
    line = await stack.finished(order)

    assert cancelled.status_code == 200, cancelled.text
    assert again.status_code == 409
    assert line["state"] == "cancelled"
    [refund] = line["refunds"]
    assert Decimal(refund["amount"]) == Decimal("37.50")
    key = f"backorder:{order}:1"
    payments = await stack.requests("payments", key)
    assert [row["body"]["amount"] for row in payments] == ["37.50"]
    kinds = [row["body"]["kind"] for row in await stack.requests("notifications", key)]
    assert kinds == ["delay_notice", "cancelled_refunded"]  # nothing inbound dated it
    assert await stack.requests("carrier", key) == []


async def test_cancel_releases_held_stock_to_the_next_waiting_line(stack: Stack) -> None:
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    first, second = f"h1{tag}", f"h2{tag}"
    base = hours_ago(10)
    await stack.start(backorder(first, sku, quantity=4, ship_policy="complete", ordered_at=base))
    await stack.start(backorder(second, sku, quantity=3, ordered_at=base + timedelta(minutes=1)))
    await stack.wait_state(first, "waiting")
    await stack.wait_state(second, "waiting")
    await stack.receive(sku, 3)
    await stack.wait_state(first, "partially_allocated")  # holds 3, ships only complete

    cancelled = await stack.cancel(first)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["released_quantity"] == 3
    line = await stack.finished(second)
    assert line["shipped_quantity"] == 3
    final = await stack.finished(first)
    assert final["state"] == "cancelled"
    assert final["allocated_quantity"] == 3
    assert Decimal(final["refunds"][0]["amount"]) == Decimal("19.99") * 4


async def test_cancel_after_a_partial_shipment_refunds_only_the_rest(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=5, unit_price="10.00"))
    await stack.wait_state(order, "waiting")
    await stack.receive(sku, 2)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 2)

    cancelled = await stack.cancel(order)
    line = await stack.finished(order)

    assert cancelled.status_code == 200, cancelled.text
    assert line["state"] == "cancelled"
    assert line["shipped_quantity"] == 2
    assert [refund["amount"] for refund in line["refunds"]] == ["30.00"]


async def test_cancel_of_a_shipped_line_is_refused(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, free_stock=1)
    await stack.start(backorder(order, sku))
    await stack.finished(order)

    refused = await stack.cancel(order)

    assert refused.status_code == 409, refused.text
    assert (await stack.line(order))["refunds"] == []


async def test_cancel_racing_an_arrival_loses_nothing_and_refunds_once(stack: Stack) -> None:
    """The arrival and the cancel hit the same line at once, many times over: whichever wins,
    every unit received ends shipped to someone or free, and each cancel refunds once."""
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    base = hours_ago(5)
    racers = [f"race{index}{tag}" for index in range(6)]
    backups = [f"next{index}{tag}" for index in range(6)]
    for index, order in enumerate(racers + backups):
        await stack.start(
            backorder(order, sku, quantity=2, ordered_at=base + timedelta(seconds=index))
        )
    for order in racers + backups:
        await stack.wait_state(order, "waiting")

    cancels, _receipts = await asyncio.gather(
        asyncio.gather(*(stack.cancel(order) for order in racers)),
        asyncio.gather(*(stack.receive(sku, 2) for _ in racers)),
    )

    assert all(r.status_code in (200, 409) for r in cancels), [r.text for r in cancels]
    finals = [await stack.finished(order) for order in racers]
    # Each backup line ends shipped in full or untouched; none is left half-done.
    backup_lines = [
        await stack.wait_line(
            order,
            lambda line: (
                line["shipped_quantity"] == line["allocated_quantity"]
                and line["state"] in ("shipped", "waiting")
            ),
        )
        for order in backups
    ]
    shipped = sum(line["shipped_quantity"] for line in finals + backup_lines)
    sku_row = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert shipped + sku_row["free_stock"] == 2 * len(racers), "every received unit is accounted"
    assert sku_row["free_stock"] == 0, "no stock stays free while lines wait"
    stack.assert_rules(sku)
    for line in finals:
        key = f"backorder:{line['order_id']}:1"
        refunds = await stack.requests("payments", key)
        if line["state"] == "cancelled":
            assert len(refunds) == 1
            assert line["shipped_quantity"] == 0
        else:
            assert refunds == []
            assert line["state"] == "shipped"
