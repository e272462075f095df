"""Preorder and supplier dates customers can hold the service to: a release moved without moving
the business-day ship date tells no one; the preorder label gives the date a line started now
is given; a supplier's new lateness re-dates every SKU waiting on its POs; turning on
`ship_before_release` ships the stock held for preorders."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from tests.test_preorders import put_release


def next_friday(after: datetime) -> datetime:
    """A Friday at 09:00 UTC at least a week after `after` (the lines are preorders)."""
    day = (after + timedelta(days=7)).replace(hour=9, minute=0, second=0, microsecond=0)
    return day + timedelta(days=(4 - day.weekday()) % 7)


async def test_a_release_moved_over_a_weekend_tells_only_when_the_business_day_ship_date_moves(
    stack: Stack,
) -> None:
    sku, orders = new_id("sku"), [new_id("wk"), new_id("wk")]
    friday = next_friday(datetime.now(UTC))
    await put_release(stack, sku, friday)
    for order in orders:
        assert (await stack.start(backorder(order, sku))).status_code == 201
    for order in orders:
        line = await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
        # Three business days of handling from a Friday: the Wednesday after.
        assert datetime.fromisoformat(line["eta"]) == friday + timedelta(days=5)

    saturday = friday + timedelta(days=1)
    await put_release(stack, sku, saturday)
    for order in orders:
        # The stock now waits for the Saturday release, but the promise is still Wednesday.
        line = await stack.wait_line(
            order, lambda line: datetime.fromisoformat(line["next_deadline"]) == saturday
        )
        assert datetime.fromisoformat(line["eta"]) == friday + timedelta(days=5)
    await asyncio.sleep(1.5)
    for order in orders:
        assert len((await stack.line(order))["messages"]) == 1, "the ship date did not move"

    monday = friday + timedelta(days=3)
    await put_release(stack, sku, monday)
    for order in orders:
        line = await stack.wait_line(order, lambda line: len(line["messages"]) == 2)
        assert line["messages"][1]["kind"] == "delay_notice"
        # Monday plus three business days: Thursday, one day past the promise.
        assert datetime.fromisoformat(line["eta"]) == friday + timedelta(days=6)
    await put_release(stack, sku, monday)
    await asyncio.sleep(1.5)
    for order in orders:
        assert len((await stack.line(order))["messages"]) == 2, "told once"
