"""Taking an in-stock substitute: only when in stock; the old queue gets the line's units."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.support.factories import backorder, hours_ago, new_id
from tests.support.stack import Stack


async def test_a_substitute_is_taken_only_when_in_stock_and_frees_the_old_queue(
    stack: Stack,
) -> None:
    old, alt, tag = new_id("sku"), new_id("alt"), new_id("")
    await stack.put_sku(alt, free_stock=0, price="15.00")
    await stack.put_sku(old, substitutes=[alt])
    first, second = f"s1{tag}", f"s2{tag}"
    base = hours_ago(3)
    await stack.start(backorder(first, old, quantity=2, ship_policy="complete", ordered_at=base))
    await stack.start(backorder(second, old, ordered_at=base + timedelta(minutes=1)))
    await stack.wait_state(first, "waiting")
    await stack.wait_state(second, "waiting")
    await stack.receive(old, 1)
    await stack.wait_state(first, "partially_allocated")
    take = f"/v1/backorders/{first}/1/substitutes/{alt}/take"

    refused = await stack.api.post(take, headers=stack.auth("order"))
    not_offered = await stack.api.post(
        f"/v1/backorders/{first}/1/substitutes/{second}/take", headers=stack.auth("order")
    )
    await stack.put_sku(alt, free_stock=5, price="15.00")
    taken = await stack.api.post(take, headers=stack.auth("order"))

    assert refused.status_code == 409 and "no longer in stock" in refused.json()["detail"]
    assert not_offered.status_code == 409
    assert taken.status_code == 200, taken.text
    line = await stack.finished(first)
    assert line["sku"] == alt
    assert [shipment["quantity"] for shipment in line["shipments"]] == [2]
    assert [Decimal(refund["amount"]) for refund in line["refunds"]] == [Decimal("9.98")]
    carrier = await stack.requests("carrier", f"backorder:{first}:1")
    assert [row["body"]["sku"] for row in carrier] == [alt]
    assert (await stack.finished(second))["shipped_quantity"] == 1, "the returned unit moved on"
    stack.assert_rules(old, alt)
