"""The HTTP contract: idempotent starts, refusals that name the field and write nothing, auth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import func, select

from admission import Conflict, InvalidRequest
from client import BackorderClient
from store.tables import LineRow, ReceiptRow, SkuRow
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


def count(stack: Stack, table: Any, *where: Any) -> int:
    with stack.db.transaction() as session:
        return int(session.exec(select(func.count()).select_from(table).where(*where)).one())


async def test_same_start_twice_is_200_and_one_workflow(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku, quantity=2)

    responses = await asyncio.gather(*(stack.start(body) for _ in range(4)))

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert {r.json()["workflow_id"] for r in responses} == {f"backorder:{order}:1"}
    await stack.wait_state(order, "waiting")
    assert count(stack, LineRow, LineRow.order_id == order) == 1
    key = f"backorder:{order}:1"
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
    assert len(await stack.requests("notifications", key)) == 1


async def test_same_ids_with_another_body_is_409(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    assert (await stack.start(backorder(order, sku, quantity=2))).status_code == 201

    clash = await stack.start(backorder(order, sku, quantity=3))

    assert clash.status_code == 409
    line = await stack.wait_state(order, "waiting")
    assert line["quantity"] == 2


async def test_python_client_applies_the_same_idempotency(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku)

    client = stack.client()
    first = await client.start(body)
    second = await client.start(dict(body))
    with pytest.raises(Conflict):
        await client.start(body | {"quantity": 9})

    assert (first.created, second.created) == (True, False)
    status = await client.status(order, "1")
    assert status.sku == sku


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("zero quantity", {"quantity": 0}, "quantity"),
    ("negative quantity", {"quantity": -3}, "quantity"),
    ("quantity as text", {"quantity": "5"}, "quantity"),
    ("price as float", {"unit_price": 19.99}, "unit_price"),
    ("negative price", {"unit_price": "-1.00"}, "unit_price"),
    ("unknown channel", {"channel": "myspace"}, "channel"),
    ("naive ordered_at", {"ordered_at": "2026-11-20T10:00:00"}, "ordered_at"),
    ("bad email", {"customer": {"id": "c1", "email": "nope", "tier": "standard"}}, "email"),
    ("colon in order id", {"order_id": "a:b"}, "order_id"),
    ("unknown field", {"colour": "red"}, "colour"),
    ("bad ship policy", {"ship_policy": "whenever"}, "ship_policy"),
]


@pytest.mark.parametrize(
    ("case", "change", "field"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES]
)
async def test_invalid_backorder_is_422_naming_the_field_and_writes_nothing(
    stack: Stack, case: str, change: dict[str, Any], field: str
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    body = backorder(order, sku) | change

    response = await stack.start(body)

    assert response.status_code == 422, response.text
    assert field in response.text
    target = body["order_id"] if isinstance(body["order_id"], str) else order
    assert count(stack, LineRow, LineRow.order_id == target) == 0
    listed = await stack.api.get(f"/v1/backorders/{order}/1", headers=stack.auth("order"))
    assert listed.status_code == 404


@pytest.mark.parametrize("missing", ["order_id", "sku", "quantity", "customer", "ordered_at"])
async def test_missing_field_is_422_naming_it(stack: Stack, missing: str) -> None:
    body = backorder(new_id(), "any-sku")
    del body[missing]

    response = await stack.start(body)

    assert response.status_code == 422
    assert any(missing in error["loc"] for error in response.json()["detail"])


async def test_unknown_sku_is_422_and_writes_nothing(stack: Stack) -> None:
    order = new_id()

    response = await stack.start(backorder(order, new_id("nosuch")))
    receipt = await stack.receive(new_id("nosuch"), 3)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sku"]
    assert receipt.status_code == 422
    assert count(stack, LineRow, LineRow.order_id == order) == 0
    missing = await stack.api.get(f"/v1/backorders/{order}/1", headers=stack.auth("order"))
    assert missing.status_code == 404


async def test_invalid_receipt_and_sku_bodies_are_refused_whole(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    receipt_id = new_id("r")

    zero = await stack.api.post(
        "/v1/suppliers/acme/receipts",
        json={"receipt_id": receipt_id, "sku": sku, "quantity": 0},
        headers=stack.auth("acme"),
    )
    bad_sku = await stack.api.put(
        f"/v1/skus/{new_id('sku')}",
        json={"name": "x", "free_stock": -1},
        headers=stack.auth("ops"),
    )
    bad_substitute = await stack.api.put(
        f"/v1/skus/{new_id('sku')}",
        json={"name": "x", "substitutes": ["no-such-sku"]},
        headers=stack.auth("ops"),
    )

    assert zero.status_code == 422 and "quantity" in zero.text
    assert bad_sku.status_code == 422 and "free_stock" in bad_sku.text
    assert bad_substitute.status_code == 422 and "substitutes" in bad_substitute.text
    assert count(stack, ReceiptRow, ReceiptRow.receipt_id == receipt_id) == 0
    assert count(stack, SkuRow, SkuRow.name == "x") == 0


async def test_tokens_are_required_and_scoped(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    receipt = {"receipt_id": new_id("r"), "sku": sku, "quantity": 1}

    anonymous = await stack.api.post("/v1/backorders", json=backorder(new_id(), sku))
    wrong = await stack.api.post(
        "/v1/backorders", json=backorder(new_id(), sku), headers={"Authorization": "Bearer nope"}
    )
    supplier_starts = await stack.api.post(
        "/v1/backorders", json=backorder(new_id(), sku), headers=stack.auth("acme")
    )
    foreign_receipt = await stack.api.post(
        "/v1/suppliers/acme/receipts", json=receipt, headers=stack.auth("globex")
    )
    own_receipt = await stack.api.post(
        "/v1/suppliers/acme/receipts", json=receipt, headers=stack.auth("acme")
    )

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert supplier_starts.status_code == 403
    assert foreign_receipt.status_code == 403
    assert own_receipt.status_code == 201


async def test_list_filters_by_sku_state_and_order(stack: Stack) -> None:
    sku, other = new_id("sku"), new_id("sku")
    await stack.put_sku(sku)
    await stack.put_sku(other, free_stock=5)
    waiting, shipped = new_id(), new_id()
    await stack.start(backorder(waiting, sku))
    await stack.start(backorder(shipped, other))
    await stack.wait_state(waiting, "waiting")
    await stack.finished(shipped)

    by_sku = await stack.api.get(f"/v1/backorders?sku={sku}", headers=stack.auth("ops"))
    by_state = await stack.api.get(
        f"/v1/backorders?sku={other}&state=shipped", headers=stack.auth("ops")
    )
    by_order = await stack.api.get(f"/v1/backorders?order_id={waiting}", headers=stack.auth("ops"))

    assert [line["order_id"] for line in by_sku.json()] == [waiting]
    assert [line["order_id"] for line in by_state.json()] == [shipped]
    assert [line["sku"] for line in by_order.json()] == [sku]


async def test_healthz_reports_store_and_temporal(stack: Stack) -> None:
    response = await stack.api.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok", "temporal": "ok"}


async def test_python_client_refuses_what_the_api_refuses(stack: Stack) -> None:
    client = stack.client()
    order = new_id()

    with pytest.raises(InvalidRequest) as invalid:
        await client.start(backorder(order, "any", quantity=0))
    with pytest.raises(InvalidRequest) as unknown:
        await client.start(backorder(order, new_id("nosuch")))

    assert invalid.value.field == "quantity"
    assert unknown.value.field == "sku" and unknown.value.errors[0].type == "unknown_sku"
    assert count(stack, LineRow, LineRow.order_id == order) == 0


async def test_control_characters_in_free_text_are_refused_naming_the_field(stack: Stack) -> None:
    """PostgreSQL refuses NUL in text: found by fuzzing, a NUL once got a 500, a hung request or
    a line whose messages could never be sent. Now the door refuses it, and nothing is written."""
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    nul_email = {"id": "c1", "email": "a\u0000b@example.com", "tier": "standard"}
    cases = [
        ("POST", "/v1/backorders", backorder(order, sku, customer=nul_email), "email"),
        ("POST", "/v1/subscriptions", {"sku": sku, "customer": nul_email}, "email"),
        ("PUT", f"/v1/skus/{sku}", {"name": "bad\u0000name"}, "name"),
        ("POST", f"/v1/backorders/{order}/1/cancel", {"reason": "x\u0000y"}, "reason"),
    ]
    for method, path, body, field in cases:
        response = await stack.api.request(method, path, json=body, headers=stack.auth("ops"))
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["loc"][-1] == field
    assert (
        await stack.api.get(f"/v1/backorders/{order}/1", headers=stack.auth("ops"))
    ).status_code == 404
    sku_now = await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))
    assert sku_now.json()["name"] == f"Product {sku}"


def _declared(media: str, schema: dict[str, Any]) -> bool:
    """A response schema that says what comes back: a named model (or a list or a tagged union
    of them) for JSON, a string for text and HTML; not an anonymous "any object"."""
    if media != "application/json":
        return schema.get("type") == "string"
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return "$ref" in schema.get("items", {})
    variants = schema.get("oneOf") or schema.get("anyOf") or []
    return bool(variants) and all("$ref" in variant for variant in variants)


async def test_the_openapi_document_declares_a_response_schema_for_every_2xx(stack: Stack) -> None:
    document = (await stack.api.get("/openapi.json")).json()

    undeclared = [
        f"{method.upper()} {path} {status} {media or '(no content)'}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2")
        for media, body in (response.get("content") or {"": {}}).items()
        if not _declared(media, body.get("schema", {}))
    ]

    assert len(document["paths"]) >= 18
    assert undeclared == []
    links = document["paths"]["/v1/backorders"]["post"]["responses"]["201"]["links"]
    assert {"GetLine", "CancelLine", "SetEta"} <= set(links)


async def test_the_python_client_opens_from_settings_and_answers_as_the_api(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    target = stack.services.client.service_client.config.target_host
    settings = stack.settings.model_copy(update={"temporal_address": target})

    body = backorder(order, sku)
    async with BackorderClient.open(settings) as client:
        started = await client.start(body)
        again = await client.start(body)
        line = await client.status(order, "1")
    through_api = await stack.start(body)

    assert (started.created, again.created) == (True, False)
    assert line.order_id == order and line.sku == sku
    assert through_api.status_code == 200
    assert through_api.json() == again.model_dump()
