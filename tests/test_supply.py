"""Purchase orders and honest dates: the ETA of every queue position, changes told once,
availability labels against hand-computed queues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.factories import backorder, new_id
from tests.support.stack import Stack

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
RECEIVING = DAY  # the default policy's receiving time, added to a PO's expected date


async def put_po(
    stack: Stack, po: str, sku: str, quantity: int, expected: datetime, supplier: str = "acme"
) -> dict[str, Any]:
    response = await stack.api.put(
        f"/v1/suppliers/{supplier}/purchase-orders/{po}",
        json={"sku": sku, "quantity": quantity, "expected_at": expected.isoformat()},
        headers=stack.auth(supplier),
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def etas(stack: Stack, orders: list[str]) -> list[datetime | None]:
    lines = [await stack.line(order) for order in orders]
    return [datetime.fromisoformat(line["eta"]) if line["eta"] else None for line in lines]


async def eta_messages(stack: Stack, order: str) -> int:
    rows = await stack.requests("notifications", f"backorder:{order}:1")
    return sum(1 for row in rows if row["body"]["kind"] == "eta_update")


async def test_every_queue_position_gets_the_date_of_the_po_that_covers_it(stack: Stack) -> None:
    sku, tag = new_id("sku"), new_id("")
    await stack.put_sku(sku)
    quantities = [2, 3, 1, 4, 2]
    orders = [f"q{index}{tag}" for index in range(len(quantities))]
    for index, (order, quantity) in enumerate(zip(orders, quantities, strict=True)):
        body = backorder(order, sku, quantity, ordered_at=NOW + timedelta(seconds=index))
        await stack.start(body | {"ship_by": (NOW + 60 * DAY).isoformat()})
    for order in orders:
        await stack.wait_state(order, "waiting")

    # Inbound by date: 2 on day 5 (globex), 4 on day 10, 5 on day 20: 2, 6, 11 in all.
    await put_po(stack, f"p3{tag}", sku, 2, NOW + 5 * DAY, supplier="globex")
    await put_po(stack, f"p1{tag}", sku, 4, NOW + 10 * DAY)
    await put_po(stack, f"p2{tag}", sku, 5, NOW + 20 * DAY)

    # Demand 2, 5, 6, 10, 12: covered on days 5, 10, 10, 20; the last line is not covered.
    expected = [NOW + d * DAY + RECEIVING for d in (5, 10, 10, 20)] + [None]
    assert await etas(stack, orders) == expected
    for order in orders[:4]:
        await stack.wait_line(order, lambda line: len(line["messages"]) == 2)
        assert await eta_messages(stack, order) == 1, "one message per real change"
    assert await eta_messages(stack, orders[4]) == 0

    await put_po(stack, f"p2{tag}", sku, 5, NOW + 20 * DAY)  # the same PO again
    await put_po(stack, f"p1{tag}", sku, 4, NOW + 15 * DAY)  # a later date for P1
    assert await etas(stack, orders) == [
        NOW + 5 * DAY + RECEIVING,
        NOW + 15 * DAY + RECEIVING,
        NOW + 15 * DAY + RECEIVING,
        NOW + 20 * DAY + RECEIVING,
        None,
    ]
    await stack.wait_line(orders[1], lambda line: len(line["messages"]) == 3)
    assert [await eta_messages(stack, o) for o in orders] == [1, 2, 2, 1, 0]

    # A cancel ahead moves the last line up into P2's cover, and it is told.
    await stack.api.post(f"/v1/backorders/{orders[0]}/1/cancel", headers=stack.auth("order"))
    await stack.finished(orders[0])
    await stack.wait_line(orders[4], lambda line: line["eta"] is not None)
    assert (await etas(stack, orders[4:])) == [NOW + 20 * DAY + RECEIVING]
    await stack.wait_line(orders[4], lambda line: len(line["messages"]) == 2)

    # A receipt on P3 fills the head of the queue and reduces what P3 still has inbound.
    receipt = {"receipt_id": new_id("r"), "sku": sku, "quantity": 2, "po_id": f"p3{tag}"}
    response = await stack.api.post(
        "/v1/suppliers/globex/receipts", json=receipt, headers=stack.auth("globex")
    )
    assert response.status_code == 201, response.text
    await stack.wait_line(orders[1], lambda line: line["shipped_quantity"] == 2)
    assert await etas(stack, orders[1:]) == [
        NOW + 15 * DAY + RECEIVING,
        NOW + 15 * DAY + RECEIVING,
        NOW + 20 * DAY + RECEIVING,
        NOW + 20 * DAY + RECEIVING,
    ]


async def test_a_receipt_must_name_a_po_of_its_own_supplier_and_sku(stack: Stack) -> None:
    sku, other, tag = new_id("sku"), new_id("sku"), new_id("")
    await stack.put_sku(sku)
    await stack.put_sku(other)
    await put_po(stack, f"po{tag}", sku, 3, NOW + 5 * DAY)

    async def receive(supplier: str, body_sku: str) -> int:
        receipt = {"receipt_id": new_id("r"), "sku": body_sku, "quantity": 1, "po_id": f"po{tag}"}
        response = await stack.api.post(
            f"/v1/suppliers/{supplier}/receipts", json=receipt, headers=stack.auth(supplier)
        )
        return response.status_code

    assert await receive("globex", sku) == 422, "another supplier's PO"
    assert await receive("acme", other) == 422, "a PO of another SKU"
    foreign = await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/x{tag}",
        json={"sku": sku, "quantity": 1, "expected_at": NOW.isoformat()},
        headers=stack.auth("globex"),
    )
    assert foreign.status_code == 403


async def label(stack: Stack, sku: str) -> dict[str, Any]:
    response = await stack.api.get(f"/v1/availability/{sku}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_availability_labels_match_hand_computed_queues(stack: Stack) -> None:
    plenty, few, none, inbound, short = (new_id(name) for name in ("pl", "fw", "no", "in", "sh"))
    await stack.put_sku(plenty, free_stock=10)
    await stack.put_sku(few, free_stock=3)
    await stack.put_sku(none)
    await stack.put_sku(inbound)
    await stack.put_sku(short)
    tag = new_id("")
    # `inbound`: 4 units waited for, 10 arriving in 10 days: a new order is covered.
    await stack.start(backorder(f"i{tag}", inbound, 4))
    await put_po(stack, f"pi{tag}", inbound, 10, NOW + 10 * DAY + timedelta(hours=1))
    # `short`: 4 units waited for, 4 arriving: a new order is not covered.
    await stack.start(backorder(f"s{tag}", short, 4))
    await put_po(stack, f"ps{tag}", short, 4, NOW + 10 * DAY)
    await stack.wait_state(f"i{tag}", "waiting")
    await stack.wait_state(f"s{tag}", "waiting")

    assert (await label(stack, plenty))["label"] == "In stock"
    assert (await label(stack, few))["label"] == "Only 3 left"
    assert (await label(stack, none))["label"] == "Out of stock"
    backordered = await label(stack, inbound)
    assert backordered["label"] == "Backorder: ships in 11-15 days"
    assert (backordered["waiting_units"], backordered["inbound_units"]) == (4, 10)
    shorted = await label(stack, short)
    assert shorted["label"] == "Out of stock", "never a date the supply cannot meet"
    assert (shorted["waiting_units"], shorted["inbound_units"]) == (4, 4)
    assert (await stack.api.get(f"/v1/availability/{new_id('nosuch')}")).status_code == 404


async def redatings(stack: Stack, order: str) -> int:
    """How many times the line's workflow asked for its SKU's ETAs to be recomputed."""
    handle = stack.services.client.get_workflow_handle(f"backorder:{order}:1")
    history = await handle.fetch_history()
    return sum(
        1
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "refresh_etas"
    )


def eta_other_than(eta: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: line["eta"] != eta


async def test_a_line_queued_ahead_re_dates_those_behind_only_when_their_dates_move(
    stack: Stack,
) -> None:
    tag = new_id("")
    late_ship_by = (NOW + 60 * DAY).isoformat()
    early_ship_by = (NOW + 30 * DAY).isoformat()
    for case, (first_po, second_po) in {"same": (10, 0), "moves": (1, 5)}.items():
        sku = new_id(f"sku-{case}")
        await stack.put_sku(sku)
        await put_po(stack, f"pa-{case}{tag}", sku, first_po, NOW + 5 * DAY, supplier="globex")
        if second_po:
            await put_po(stack, f"pb-{case}{tag}", sku, second_po, NOW + 9 * DAY, supplier="globex")
        behind, ahead = f"b-{case}{tag}", f"a-{case}{tag}"
        await stack.start(backorder(behind, sku, 1) | {"ship_by": late_ship_by})
        told = await stack.wait_line(behind, lambda line: len(line["messages"]) == 1)
        before = datetime.fromisoformat(told["eta"])
        # An earlier ship-by goes ahead of the waiting line in the queue.
        await stack.start(backorder(ahead, sku, 1) | {"ship_by": early_ship_by})
        await stack.wait_line(ahead, lambda line: len(line["messages"]) == 1)
        if case == "same":
            # One PO covers both: the line behind keeps its date; no one recomputes anything.
            assert await redatings(stack, ahead) == 0
            assert (await etas(stack, [ahead, behind])) == [before, before]
            assert await eta_messages(stack, behind) == 0
        else:
            # The first PO's one unit goes to the line ahead: the line behind moves to the
            # second PO's date, and is told once.
            assert await redatings(stack, ahead) == 1
            moved = await stack.wait_line(behind, eta_other_than(told["eta"]))
            assert datetime.fromisoformat(moved["eta"]) - before == 4 * DAY
            assert (await etas(stack, [ahead])) == [before]
            await stack.wait_line(behind, lambda line: len(line["messages"]) == 2)
            assert await eta_messages(stack, behind) == 1
