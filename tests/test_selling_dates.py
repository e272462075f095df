"""Preorder and supplier dates customers can hold the service to: a release moved without moving
the business-day ship date tells no one; the preorder label gives the date a line started now
is given; a supplier's new lateness re-dates every SKU waiting on its POs; turning on
`ship_before_release` ships the stock held for preorders."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from store.supply import preorder_label
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from tests.test_preorders import put_release
from tests.test_supply import label as availability


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


async def test_the_preorder_label_gives_the_date_a_line_started_now_is_given(
    stack: Stack,
) -> None:
    supplier, sku, order = new_id("sup"), new_id("sku"), new_id("lbl")
    now = datetime.now(UTC)
    release = now + timedelta(days=3)
    await put_release(stack, sku, release)
    shown = await availability(stack, sku)
    assert (shown["label"], datetime.fromisoformat(shown["ships_from"])) == (
        preorder_label(release),
        release,
    ), "nothing inbound: the release is the basis of the promise"

    # Supply that covers a new line only after the release: the label says so.
    expected = now + timedelta(days=10)
    body = {"sku": sku, "quantity": 5, "expected_at": expected.isoformat()}
    response = await stack.api.put(
        f"/v1/suppliers/{supplier}/purchase-orders/po1", json=body, headers=stack.auth("ops")
    )
    assert response.status_code == 201, response.text
    shown = await availability(stack, sku)
    ships_from = datetime.fromisoformat(shown["ships_from"])
    assert ships_from == expected + timedelta(days=1), "the PO's date plus a day of receiving"
    assert shown["label"] == preorder_label(ships_from)
    assert shown["status"] == "preorder"

    assert (await stack.start(backorder(order, sku))).status_code == 201
    line = await stack.wait_line(order, lambda line: line["eta"] is not None)
    assert datetime.fromisoformat(line["eta"]) == ships_from, "the label agrees with the line"


async def test_a_suppliers_new_lateness_re_dates_the_lines_of_its_other_skus(
    stack: Stack,
) -> None:
    supplier, received, other, order = new_id("late"), new_id("sku"), new_id("sku"), new_id()
    ops = stack.auth("ops")
    await stack.put_sku(received)
    await stack.put_sku(other)
    now = datetime.now(UTC)

    async def purchase_order(po: str, sku: str, expected_at: datetime) -> None:
        body = {"sku": sku, "quantity": 2, "expected_at": expected_at.isoformat()}
        path = f"/v1/suppliers/{supplier}/purchase-orders/{po}"
        response = await stack.api.put(path, json=body, headers=ops)
        assert response.status_code == 201, response.text

    expected = now + timedelta(days=2)
    await purchase_order("other", other, expected)
    assert (await stack.start(backorder(order, other))).status_code == 201
    line = await stack.wait_line(order, lambda line: line["eta"] is not None)
    # No record yet: the PO's date plus a day of receiving.
    assert abs(datetime.fromisoformat(line["eta"]) - (expected + timedelta(days=1))) < timedelta(
        seconds=1
    )

    for n in range(3):  # three orders of the other SKU, each a week late: a record
        await purchase_order(f"late{n}", received, now - timedelta(days=7))
        receipt = {"receipt_id": new_id("r"), "sku": received, "quantity": 2, "po_id": f"late{n}"}
        response = await stack.api.post(
            f"/v1/suppliers/{supplier}/receipts", json=receipt, headers=ops
        )
        assert response.status_code == 201, response.text

    # The line waiting on the supplier's PO for another SKU is told the week it adds.
    line = await stack.wait_line(
        order,
        lambda line: datetime.fromisoformat(line["eta"]) > expected + timedelta(days=7),
    )
    eta = datetime.fromisoformat(line["eta"])
    assert abs(eta - (expected + timedelta(days=8))) < timedelta(minutes=2)


async def test_turning_on_ship_before_release_ships_the_stock_held_for_preorders(
    stack: Stack,
) -> None:
    sku, first, second = new_id("sku"), new_id("sbr"), new_id("sbr")
    release = datetime.now(UTC) + timedelta(days=5)
    await put_release(stack, sku, release)
    for order in (first, second):
        assert (await stack.start(backorder(order, sku))).status_code == 201
        await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
    assert (await stack.receive(sku, 1)).status_code == 201
    await stack.wait_state(first, "allocated")
    await asyncio.sleep(1.0)
    assert (await stack.line(first))["shipments"] == [], "held for the release"

    await put_release(stack, sku, release, ship_before_release=True)
    line = await stack.wait_state(first, "shipped")
    assert datetime.fromisoformat(line["shipments"][0]["created_at"]) < release
    # The next preorder in the queue ships what arrives, as it arrives.
    assert (await stack.receive(sku, 1)).status_code == 201
    await stack.wait_state(second, "shipped")
    stack.assert_rules(sku)
