"""Temporal holds the process: a line survives its worker going away mid-wait."""

from __future__ import annotations

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


async def test_restart_of_the_worker_mid_wait_loses_nothing(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=2))
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)

    await stack.services.stop_worker()
    try:
        # Accepted while no worker runs: durable in Temporal, done when one comes back.
        receipt = await stack.receive(sku, 2)
        assert receipt.status_code == 201
        assert (await stack.line(order))["state"] == "waiting"
    finally:
        await stack.services.start_worker()

    line = await stack.finished(order)
    assert line["state"] == "shipped"
    key = f"backorder:{order}:1"
    assert len(await stack.requests("carrier", key)) == 1
    kinds = [row["body"]["kind"] for row in await stack.requests("notifications", key)]
    assert kinds == ["delay_notice", "shipped"]  # nothing inbound dated it
