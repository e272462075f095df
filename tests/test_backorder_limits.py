"""Backorder limits: what a storefront may still sell (free + inbound + limit - waiting), "Out of
stock" at 0, and a line sold beyond the limit accepted, answered over_limit, told at once that
no date can be given, and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from tests.test_supply import label as availability


async def over_limit_count(stack: Stack) -> int:
    response = await stack.api.get("/v1/metrics", headers=stack.auth("ops"))
    count: int = response.json()["over_limit_lines"]
    return count


async def test_sellable_quantity_counts_lines_as_they_are_accepted_and_over_limit_lines_are_kept(
    stack: Stack,
) -> None:
    sku, within, beyond = new_id("sku"), new_id("in"), new_id("over")
    await stack.put_sku(sku, backorder_limit=2)
    po = {
        "sku": sku,
        "quantity": 3,
        "expected_at": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
    }
    response = await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/{new_id('po')}", json=po, headers=stack.auth("acme")
    )
    assert response.status_code == 201, response.text
    assert (await availability(stack, sku))["sellable_quantity"] == 0 + 3 + 2
    counted = await over_limit_count(stack)

    first = await stack.start(backorder(within, sku, quantity=3))
    assert first.status_code == 201 and first.json()["over_limit"] is False
    # Counted at once, before the line's workflow has queued it.
    assert (await availability(stack, sku))["sellable_quantity"] == 2
    # The line within the limit is queued (and told) before the next one starts: queued first,
    # it stands ahead of it on the purchase order, as the limit counted it.
    await stack.wait_line(within, lambda line: len(line["messages"]) >= 1)
    beyond_body = backorder(beyond, sku, quantity=3)
    second = await stack.start(beyond_body)
    assert second.status_code == 201 and second.json()["over_limit"] is True
    shown = await availability(stack, sku)
    assert (shown["sellable_quantity"], shown["label"], shown["status"]) == (
        0,
        "Out of stock",
        "out_of_stock",
    )
    again = await stack.start(beyond_body)
    assert again.status_code == 200 and again.json()["over_limit"] is True

    told = await stack.wait_line(beyond, lambda line: len(line["messages"]) >= 1)
    assert [message["kind"] for message in told["messages"]] == ["delay_notice"]
    assert "cannot give you a new date" in told["messages"][0]["body"]
    # The line within the limit has a date with a basis (the purchase order's), later than its
    # promise: its first message is the notice with that date, never one without a date.
    kept = await stack.wait_line(within, lambda line: len(line["messages"]) >= 1)
    assert [message["kind"] for message in kept["messages"]] == ["delay_notice"]
    assert "cannot give you a new date" not in kept["messages"][0]["body"]
    assert kept["eta"] is not None
    assert await over_limit_count(stack) == counted + 1
    shown = await availability(stack, sku)
    assert (shown["waiting_units"], shown["sellable_quantity"]) == (6, 0)


async def test_a_limit_of_zero_never_backorders_and_no_limit_sells_on(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku, free_stock=1, backorder_limit=0)
    assert (await availability(stack, sku))["sellable_quantity"] == 1
    await stack.put_sku(sku, free_stock=0, backorder_limit=0)
    shown = await availability(stack, sku)
    assert (shown["sellable_quantity"], shown["status"]) == (0, "out_of_stock")
    sku_view = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert sku_view["backorder_limit"] == 0

    await stack.put_sku(sku, free_stock=0, backorder_limit=4)
    shown = await availability(stack, sku)
    assert (shown["sellable_quantity"], shown["label"]) == (4, "Backorder: no ship date yet")

    # Each PUT sets the catalog entry whole: a limit left out is no limit.
    await stack.put_sku(sku, free_stock=0)
    shown = await availability(stack, sku)
    assert (shown["sellable_quantity"], shown["backorder_limit"]) == (None, None)


async def test_a_preorder_sold_beyond_the_limit_starts_with_the_notice_not_a_release_date(
    stack: Stack,
) -> None:
    """The release date says when the product is out, not that units will be there for this
    line: with nothing inbound and the limit used up, the first message gives no date."""
    sku, line = new_id("sku"), new_id("over")
    release = datetime.now(UTC) + timedelta(days=5)
    await stack.put_sku(sku, backorder_limit=0, release_at=release.isoformat())
    started = await stack.start(backorder(line, sku, quantity=1))
    assert started.status_code == 201 and started.json()["over_limit"] is True

    told = await stack.wait_line(line, lambda found: len(found["messages"]) >= 1)
    assert [message["kind"] for message in told["messages"]] == ["delay_notice"]
    assert "cannot give you a new date" in told["messages"][0]["body"]
