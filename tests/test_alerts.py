"""Back-in-stock alerts: one message when stock is free for new orders, once per subscription."""

from __future__ import annotations

from typing import Any

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


async def subscribe(stack: Stack, sku: str, who: str) -> str:
    body = {"sku": sku, "customer": {"id": who, "email": f"{who}@example.com"}}
    response = await stack.api.post("/v1/subscriptions", json=body, headers=stack.auth("order"))
    assert response.status_code == 201, response.text
    subscription: str = response.json()["subscription_id"]
    return subscription


async def alerts(stack: Stack, subscription: str) -> list[dict[str, Any]]:
    return await stack.requests("notifications", f"subscription:{subscription}")


async def test_an_alert_is_sent_once_when_stock_is_free_and_not_after_unsubscribing(
    stack: Stack,
) -> None:
    sku, waiting = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(waiting, sku, quantity=2))
    await stack.wait_state(waiting, "waiting")
    keen, gone = await subscribe(stack, sku, "keen"), await subscribe(stack, sku, "gone")
    removed = await stack.api.delete(f"/v1/subscriptions/{gone}", headers=stack.auth("order"))

    await stack.receive(sku, 2)  # all of it goes to the waiting line: nothing free yet
    await stack.finished(waiting)
    assert await alerts(stack, keen) == []
    for _ in range(2):  # now free for new orders; the second arrival must not alert again
        receipt_id = new_id("r")
        await stack.receive(sku, 3, receipt_id=receipt_id)
        handle = stack.services.client.get_workflow_handle(f"receipt:acme:{receipt_id}")
        await handle.result()
    line = await stack.line(waiting)

    assert removed.status_code == 200 and removed.json()["status"] == "cancelled"
    sent = await alerts(stack, keen)
    assert [row["body"]["kind"] for row in sent] == ["back_in_stock"]
    assert sent[0]["body"]["to"] == "keen@example.com"
    assert await alerts(stack, gone) == []
    assert line["state"] == "shipped"
    unknown = await stack.api.post(
        "/v1/subscriptions",
        json={"sku": new_id("nosuch"), "customer": {"id": "x", "email": "x@example.com"}},
        headers=stack.auth("order"),
    )
    assert unknown.status_code == 422 and "sku" in unknown.text
