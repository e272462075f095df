"""The edge refuses, whole, every value a workflow could not use, and records who did what from
the credential: one set of models for the HTTP API and the Python client alike.

Each rule is tried with variants through the API (422 naming the field, nothing written) and,
for the bodies the Python client takes, through the client (InvalidRequest naming the same
field). Stock counts, ETAs and purchase orders apply every time they are sent, unless they
repeat an Idempotency-Key, which is answered as the first time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import func, select
from temporalio.api.enums.v1 import EventType

from admission import OPS, InvalidRequest
from domain.contract.lines import line_key
from store.tables import LineRow, PurchaseOrderRow
from tests.support.factories import backorder, new_id
from tests.support.messages import links, sent, wait_for_kind
from tests.support.stack import Stack

NOW = datetime.now(UTC)

BAD_TIMESTAMPS: list[tuple[str, Any]] = [
    ("naive", "2026-12-10T00:00:00"),
    ("year one", "0001-01-01T00:00:00Z"),
    ("an integer", 5),
    ("epoch digits", "1700000000"),
    ("a float", 1.5e9),
    ("a date only", "2026-12-10"),
    ("past 2100", "2200-01-01T00:00:00+00:00"),
    ("a boolean", True),
    ("an offset beyond a day", "2026-12-10T00:00:00+25:00"),
]

BAD_BODIES: list[tuple[str, dict[str, Any], tuple[str | int, ...]]] = [
    ("Arabic-Indic digits", {"unit_price": "\u0661\u0662.\u0665"}, ("unit_price",)),
    ("Devanagari digits", {"unit_price": "\u0967\u0968.50"}, ("unit_price",)),
    ("cents of a yen", {"currency": "JPY", "unit_price": "12.5"}, ("unit_price",)),
    ("a tenth of a cent", {"unit_price": "12.345"}, ("unit_price",)),
    ("an exponent", {"unit_price": "1e3"}, ("unit_price",)),
    ("a made-up currency", {"currency": "ABC"}, ("currency",)),
    ("a lower-case currency", {"currency": "usd"}, ("currency",)),
    ("a fund code", {"currency": "BOV"}, ("currency",)),
    ("gold", {"currency": "XAU"}, ("currency",)),
    ("a historic currency", {"currency": "DEM"}, ("currency",)),
    ("ordered in 2090", {"ordered_at": "2090-01-01T00:00:00Z"}, ("ordered_at",)),
    (
        "ordered an hour from now",
        {"ordered_at": (NOW + timedelta(hours=1)).isoformat()},
        ("ordered_at",),
    ),
    ("ordered at an epoch integer", {"ordered_at": 1_700_000_000}, ("ordered_at",)),
    ("ordered naive", {"ordered_at": "2026-01-01T10:00:00"}, ("ordered_at",)),
    (
        "ship-by before ordered-at",
        {"ordered_at": NOW.isoformat(), "ship_by": (NOW - timedelta(days=1)).isoformat()},
        ("ship_by",),
    ),
    ("an unknown field", {"requested_by": "policy"}, ("requested_by",)),
]


def count(stack: Stack, table: Any, *where: Any) -> int:
    with stack.db.reading() as session:
        return int(session.exec(select(func.count()).select_from(table).where(*where)).one())


def loc(response: Any) -> tuple[Any, ...]:
    return tuple(response.json()["detail"][0]["loc"])


async def waiting_line(stack: Stack, **changes: Any) -> tuple[str, str]:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    assert (await stack.start(backorder(order, sku, **changes))).status_code == 201
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
    return sku, order


@pytest.mark.parametrize(
    ("case", "change", "field"), BAD_BODIES, ids=[case for case, _, _ in BAD_BODIES]
)
async def test_a_bad_value_is_refused_naming_its_field_by_the_api_and_the_python_client(
    stack: Stack, case: str, change: dict[str, Any], field: tuple[str | int, ...]
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku) | change

    response = await stack.start(body)
    with pytest.raises(InvalidRequest) as refused:
        await stack.client().start(body)

    assert response.status_code == 422, response.text
    assert loc(response) == ("body", *field)
    assert refused.value.errors[0].loc == ("body", *field)
    assert count(stack, LineRow, LineRow.order_id == order) == 0


async def test_money_within_its_currencys_minor_units_and_an_order_within_the_clock_skew_pass(
    stack: Stack,
) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    accepted = [
        {"currency": "JPY", "unit_price": "1200"},
        {"currency": "BHD", "unit_price": "12.345"},
        {"currency": "USD", "unit_price": "12.5"},
        {"ordered_at": (datetime.now(UTC) + timedelta(minutes=2)).isoformat()},
        {"ordered_at": "2026-01-01T10:00:00+05:30"},
    ]
    for change in accepted:
        response = await stack.start(backorder(new_id(), sku) | change)
        assert response.status_code == 201, (change, response.text)


@pytest.mark.parametrize(
    ("case", "value"), BAD_TIMESTAMPS, ids=[case for case, _ in BAD_TIMESTAMPS]
)
async def test_a_timestamp_must_be_an_aware_date_and_time_in_range_on_every_route(
    stack: Stack, case: str, value: Any
) -> None:
    sku, order = await waiting_line(stack)
    po = new_id("po")
    eta = await stack.api.post(
        f"/v1/backorders/{order}/1/eta", json={"eta": value}, headers=stack.auth("ops")
    )
    started = await stack.start(backorder(new_id(), sku, ordered_at=None) | {"ordered_at": value})
    ship_by = await stack.start(backorder(new_id(), sku) | {"ship_by": value})
    purchase_order = await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/{po}",
        json={"sku": sku, "quantity": 1, "expected_at": value},
        headers=stack.auth("acme"),
    )

    assert (eta.status_code, loc(eta)) == (422, ("body", "eta")), eta.text
    assert (started.status_code, loc(started)) == (422, ("body", "ordered_at"))
    assert (ship_by.status_code, loc(ship_by)) == (422, ("body", "ship_by"))
    assert (purchase_order.status_code, loc(purchase_order)) == (422, ("body", "expected_at"))
    line = await stack.line(order)
    assert line["eta"] is None and line["state"] == "waiting"
    assert count(stack, PurchaseOrderRow, PurchaseOrderRow.po_id == po) == 0


async def test_an_eta_before_the_order_is_refused_and_a_good_one_reaches_the_line_unharmed(
    stack: Stack,
) -> None:
    _, order = await waiting_line(stack, ordered_at=NOW - timedelta(days=1))
    early = (NOW - timedelta(days=2)).isoformat()
    good = (NOW + timedelta(days=12)).replace(microsecond=0)

    before = await stack.api.post(
        f"/v1/backorders/{order}/1/eta", json={"eta": early}, headers=stack.auth("ops")
    )
    unknown = await stack.api.post(
        f"/v1/backorders/{order}/1/eta",
        json={"eta": good.isoformat(), "source": "supplier"},
        headers=stack.auth("ops"),
    )
    answer = await stack.as_("ops").set_eta(order, "1", good)
    line = await stack.wait_line(order, lambda line: line["eta"] is not None)

    assert (before.status_code, loc(before)) == (422, ("body", "eta"))
    assert (unknown.status_code, loc(unknown)) == (422, ("body", "source"))
    assert answer.eta == good
    assert datetime.fromisoformat(line["eta"]) == good
    history = await stack.services.client.get_workflow_handle(line_key(order, "1")).fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failed == []
    await stack.cancel(order)


async def test_an_eta_not_in_the_future_is_refused_and_the_customer_hears_nothing_of_it(
    stack: Stack,
) -> None:
    """An hour ago is after the order but already gone: 422 naming `eta` (through the API and
    the Python client), the line keeps no date, and the notification service got no message
    calling that hour the date to come; a date still to come goes through and is told."""
    _, order = await waiting_line(stack, ordered_at=datetime.now(UTC) - timedelta(days=1))
    gone = datetime.now(UTC) - timedelta(hours=1)

    refused = await stack.api.post(
        f"/v1/backorders/{order}/1/eta", json={"eta": gone.isoformat()}, headers=stack.auth("ops")
    )
    with pytest.raises(InvalidRequest) as by_client:
        await stack.client(OPS).set_eta(order, "1", {"eta": gone.isoformat()})
    coming = (datetime.now(UTC) + timedelta(days=12)).replace(microsecond=0)
    await stack.as_("ops").set_eta(order, "1", coming)
    update = await wait_for_kind(stack, order, "eta_update")

    assert (refused.status_code, loc(refused)) == (422, ("body", "eta")), refused.text
    assert by_client.value.field == "eta"
    assert [m["body"]["kind"] for m in await sent(stack, order)] == ["delay_notice", "eta_update"]
    assert "now expected to ship by" in update["body"]["body"]
    assert datetime.fromisoformat((await stack.line(order))["eta"]) == coming
    await stack.cancel(order)


async def test_in_stock_lines_must_name_skus_of_the_catalog(stack: Stack) -> None:
    sku, other, order = new_id("sku"), new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.put_sku(other, free_stock=1)
    body = backorder(
        order,
        sku,
        ship_policy="complete",
        order_lines=["1"],
        in_stock_lines=[{"sku": other, "quantity": 1}, {"sku": new_id("nosuch"), "quantity": 1}],
    )

    response = await stack.start(body)
    with pytest.raises(InvalidRequest) as refused:
        await stack.client().start(body)

    assert (response.status_code, loc(response)) == (422, ("body", "in_stock_lines", 1, "sku"))
    assert refused.value.field == "in_stock_lines.1.sku"
    assert count(stack, LineRow, LineRow.order_id == order) == 0


async def test_path_and_query_ids_follow_the_one_pattern_on_every_route(stack: Stack) -> None:
    _, order = await waiting_line(stack)
    bad = "a%3Ab"  # `a:b`, which would make two lines one workflow id
    cases = [
        ("POST", f"/v1/backorders/{bad}/1/wait", "order"),
        ("POST", f"/v1/backorders/{order}/{bad}/wait", "order"),
        ("POST", f"/v1/backorders/{order}/1/offers/{bad}/accept", "order"),
        ("POST", f"/v1/backorders/{order}/1/offers/x%20y/accept", "order"),
        ("POST", f"/v1/backorders/{order}/1/substitutes/{bad}/take", "order"),
        ("POST", f"/v1/backorders/{bad}/1/cancel", "order"),
        ("POST", f"/v1/backorders/{bad}/1/eta", "ops"),
        ("GET", f"/v1/backorders/{bad}/1", "order"),
        ("GET", f"/v1/availability/{bad}", "order"),
        ("GET", f"/v1/backorders?sku={bad}", "order"),
        ("GET", f"/v1/backorders?order_id={bad}", "order"),
        ("GET", "/v1/backorders?colour=red", "order"),
        ("POST", f"/v1/backorders/{order}/1/wait?token=not-a-link", "order"),
    ]
    for method, path, actor in cases:
        response = await stack.api.request(
            method, path, json={"eta": None}, headers=stack.auth(actor)
        )
        assert response.status_code == 422, (path, response.text)
    assert (await stack.line(order))["state"] == "waiting"
    with pytest.raises(InvalidRequest) as refused:
        await stack.client().take_substitute(order, "1", "a:b")
    assert refused.value.field == "sku"
    await stack.cancel(order)


async def test_who_cancelled_comes_from_the_credential_never_from_the_body(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    orders = [new_id() for _ in range(4)]
    for order in orders:
        assert (await stack.start(backorder(order, sku))).status_code == 201
    notice = await wait_for_kind(stack, orders[2], "delay_notice")  # nothing inbound dates it
    for order in orders:
        await stack.wait_state(order, "waiting")

    forged = await stack.cancel(
        orders[0], reason="delayed without the customer's consent", requested_by="policy"
    )
    by_ops = await stack.cancel(orders[0], actor="ops", reason="ops cleanup")
    by_order_system = await stack.cancel(orders[1], reason="customer called")
    by_link = await stack.api.post(
        f"/v1/backorders/{orders[2]}/1/cancel?token={links(notice)[('cancel', None)]}"
    )
    by_client = await stack.client(OPS).cancel(orders[3], "1", reason="from a script")
    finals = [await stack.finished(order) for order in orders]

    assert (forged.status_code, loc(forged)) == (422, ("body", "requested_by"))
    assert [by_ops.status_code, by_order_system.status_code, by_link.status_code] == [200] * 3
    assert by_client.state == "cancelled"
    assert [line["cancelled_by"] for line in finals] == ["ops", "order_system", "customer", "ops"]
    assert [line["cancel_reason"] for line in finals] == [
        "ops cleanup",
        "customer called",
        "the customer cancelled",
        "from a script",
    ]


async def test_unknown_fields_are_refused_on_every_write(stack: Stack) -> None:
    sku, order = await waiting_line(stack)
    soon = (NOW + timedelta(days=3)).isoformat()
    cases = [
        ("POST", f"/v1/backorders/{order}/1/cancel", "order", {"reason": "x", "by": "policy"}),
        ("POST", f"/v1/backorders/{order}/1/eta", "ops", {"eta": None, "why": "late"}),
        ("POST", "/v1/suppliers/acme/receipts", "acme",
         {"receipt_id": new_id("r"), "sku": sku, "quantity": 1, "lot": "L1"}),
        ("PUT", f"/v1/suppliers/acme/purchase-orders/{new_id('po')}", "acme",
         {"sku": sku, "quantity": 1, "expected_at": soon, "carrier": "x"}),
        ("PUT", f"/v1/skus/{sku}", "ops", {"name": "x", "colour": "red"}),
        ("POST", "/v1/subscriptions", "order",
         {"sku": sku, "customer": {"id": "c", "email": "c@example.com", "vip": True}}),
    ]  # fmt: skip
    for method, path, actor, body in cases:
        response = await stack.api.request(method, path, json=body, headers=stack.auth(actor))
        assert response.status_code == 422, (path, response.text)
    line = await stack.line(order)
    assert (line["state"], line["eta"]) == ("waiting", None)
    assert (await stack.as_("ops").sku(sku)).name == f"Product {sku}"
    await stack.cancel(order)


async def test_a_stock_count_sent_again_is_applied_again(stack: Stack) -> None:
    sku, first, second = new_id("sku"), new_id(), new_id()
    count_of_three = {"name": "Kettle", "free_stock": 3}
    ops = stack.as_("ops")
    created = await ops.put_sku(sku, count_of_three)
    assert (await stack.start(backorder(first, sku, quantity=3))).status_code == 201
    await stack.finished(first)
    assert (await ops.sku(sku)).free_stock == 0

    again = await ops.put_sku(sku, count_of_three)
    assert (await stack.start(backorder(second, sku, quantity=2))).status_code == 201
    shipped = await stack.finished(second)

    assert created.free_stock == 3
    assert again.free_stock == 3
    assert shipped["shipped_quantity"] == 2
    assert (await ops.sku(sku)).free_stock == 1
    stack.assert_rules(sku)


async def test_an_idempotency_key_applies_once_answers_the_same_and_refuses_another_body(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    ops, key = stack.as_("ops"), new_id("key")
    body = {"name": "Lamp", "free_stock": 2}

    first = await ops.put(f"/v1/skus/{sku}", json=body, idempotency_key=key)
    assert (await stack.start(backorder(order, sku, quantity=2))).status_code == 201
    await stack.finished(order)
    repeated = await ops.put(f"/v1/skus/{sku}", json=body, idempotency_key=key)
    other_body = await ops.put(
        f"/v1/skus/{sku}", json=body | {"free_stock": 5}, idempotency_key=key
    )
    other_caller = await stack.as_("order").put(f"/v1/skus/{sku}", json=body, idempotency_key=key)
    bad_key = await ops.put(f"/v1/skus/{sku}", json=body, idempotency_key="two words")

    assert first.status_code == 201, first.text
    assert (repeated.status_code, repeated.json()) == (201, first.json())
    assert (other_body.status_code, loc(other_body)) == (422, ("header", "idempotency-key"))
    assert bad_key.status_code == 422
    assert other_caller.status_code == 200 and other_caller.json()["free_stock"] == 2
    stack.assert_rules(sku)


async def test_an_idempotency_key_covers_etas_and_purchase_orders_and_is_harmless_elsewhere(
    stack: Stack,
) -> None:
    sku, order = await waiting_line(stack)
    ops, acme = stack.as_("ops"), stack.as_("acme")
    eta = (NOW + timedelta(days=9)).replace(microsecond=0)
    po_path = f"/v1/suppliers/acme/purchase-orders/{new_id('po')}"
    po = {"sku": sku, "quantity": 4, "expected_at": (NOW + timedelta(days=5)).isoformat()}
    eta_key, po_key = new_id("key"), new_id("key")

    eta_answers = [
        await ops.post(f"/v1/backorders/{order}/1/eta", json={"eta": eta.isoformat()},
                       idempotency_key=eta_key)
        for _ in range(2)
    ]  # fmt: skip
    po_answers = [await acme.put(po_path, json=po, idempotency_key=po_key) for _ in range(2)]
    changed = await acme.put(po_path, json=po | {"quantity": 6})
    back = await acme.put(po_path, json=po)
    receipt = {"receipt_id": new_id("r"), "sku": sku, "quantity": 1}
    receipts = [
        await acme.post("/v1/suppliers/acme/receipts", json=receipt, idempotency_key=new_id("k"))
        for _ in range(2)
    ]

    assert [a.status_code for a in eta_answers] == [200, 200]
    assert eta_answers[0].json() == eta_answers[1].json()
    assert [a.status_code for a in po_answers] == [201, 201]
    assert po_answers[0].json() == po_answers[1].json()
    # A PO is a level: the first values sent again after others are applied again.
    assert (changed.json()["quantity"], back.json()["quantity"]) == (6, 4)
    assert [r.status_code for r in receipts] == [201, 200]
    await stack.cancel(order)


async def test_a_customer_link_for_one_action_cannot_be_used_on_another_route(
    stack: Stack,
) -> None:
    _, order = await waiting_line(stack)
    notice = await wait_for_kind(stack, order, "delay_notice")  # nothing inbound dates it
    cancel_token = links(notice)[("cancel", None)]

    as_wait = await stack.api.post(f"/v1/backorders/{order}/1/wait?token={cancel_token}")
    as_offer = await stack.api.post(
        f"/v1/backorders/{order}/1/offers/apology-1/accept?token={cancel_token}"
    )
    elsewhere = await stack.api.post(f"/v1/backorders/{new_id()}/1/cancel?token={cancel_token}")

    assert [as_wait.status_code, as_offer.status_code, elsewhere.status_code] == [403] * 3
    assert (await stack.line(order))["state"] == "waiting"
    await stack.cancel(order)
