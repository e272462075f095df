"""What customers receive, end to end through the API and read from the notification
simulator's records: lines started in each situation (supply inbound in time, none, ship-by
already past, the marketplace's deadline near) get one message at their start, whose dates
are all still to come; a seller's template folder is used for the customers who write in its
language. One stack of its own (SQLite, the fast policy: a policy day is one second), with the
templates in tests/data/templates."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.factories import backorder, new_id
from tests.support.messages import at, kinds, sent
from tests.support.poll import eventually
from tests.support.stack import Stack, running_stack

TEMPLATES = Path(__file__).parent / "data" / "templates"


@pytest.fixture(scope="module")
async def seller_stack(temporal_env: WorkflowEnvironment) -> AsyncIterator[Stack]:
    async with running_stack(
        "sqlite", temporal_env, settings_overrides={"templates_dir": TEMPLATES}
    ) as running:
        yield running


def expiries(message: dict[str, Any]) -> dict[str, datetime]:
    """When each signed link in the message stops working (a wait link: the answer-by)."""
    found = {}
    for token in message["body"]["body"].split():
        if "/v1/links/" not in token:
            continue
        claims = json.loads(base64.urlsafe_b64decode(token.rsplit("/", 1)[-1].split(".")[0] + "=="))
        found[f"{claims['action']}:{claims['offer']}"] = datetime.fromtimestamp(
            claims["expires"], UTC
        )
    return found


async def start(stack: Stack, order: str, sku: str, **fields: Any) -> None:
    response = await stack.fast.post(
        "/v1/backorders", json=backorder(order, sku, **fields), headers=stack.auth("order")
    )
    assert response.status_code == 201, response.text


async def test_each_situation_gets_one_message_at_its_start_and_no_date_already_gone(
    seller_stack: Stack,
) -> None:
    stack = seller_stack
    sku, supplied = new_id("sku"), new_id("sku")
    await stack.put_sku(sku, name="Blue kettle")
    await stack.put_sku(supplied, name="Red kettle")
    now = datetime.now(UTC)
    await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/{new_id('po')}",
        json={
            "sku": supplied,
            "quantity": 1,
            "expected_at": (now + timedelta(seconds=4)).isoformat(),
        },
        headers=stack.auth("acme"),
    )
    inbound, none, past, marketplace = (new_id() for _ in range(4))
    await asyncio.gather(
        # The stack's supply runs on real days: the PO's units are received a day after it.
        start(stack, inbound, supplied, ordered_at=now, ship_by=now + timedelta(days=3)),
        start(stack, none, sku, ordered_at=now, ship_by=now + timedelta(seconds=40)),
        start(
            stack,
            past,
            sku,
            ordered_at=now - timedelta(seconds=10),
            ship_by=now - timedelta(seconds=5),
        ),
        start(
            stack,
            marketplace,
            sku,
            channel="amazon",
            ordered_at=now - timedelta(seconds=10),
            # The marketplace cancels 3 s from now; its choice request is due in 1 s.
            ship_by=now - timedelta(seconds=4),
        ),
    )
    for order in (inbound, none, past, marketplace):
        await eventually(partial(sent, stack, order), bool, within=20, what=f"{order}'s first")
    await asyncio.sleep(1)  # the fast policy's quiet period: what else the start might send
    first = {}
    for order in (inbound, none, past, marketplace):
        messages = await sent(stack, order)
        moment = at(messages[0]) + timedelta(seconds=0.9)
        first[order] = [message for message in messages if at(message) < moment]

    assert {order: kinds(messages) for order, messages in first.items()} == {
        inbound: ["backorder_confirmation"],
        none: ["backorder_confirmation"],
        past: ["delay_notice"],
        marketplace: ["delay_notice"],
    }
    assert "expected to ship by" in first[inbound][0]["body"]["subject"]
    assert "expected" not in first[none][0]["body"]["body"].lower()
    assert "Blue kettle" in first[none][0]["body"]["subject"]
    notice = first[past][0]["body"]["body"]
    assert "cannot give you a new date" in notice and "please tell us before" in notice
    assert "10% off your next order" in notice  # the apology rung was due: in the notice
    assert "marketplace" in first[marketplace][0]["body"]["body"]
    for messages in first.values():
        for name, expires in expiries(messages[0]).items():
            assert expires > at(messages[0]), f"{name} expired before it was sent"

    # Nobody answered: each notice's line is cancelled, in a second message, at its answer-by.
    for order in (past, marketplace):
        done = await eventually(
            partial(sent, stack, order), lambda m: len(m) == 2, within=20, what="the cancel"
        )
        assert kinds(done) == ["delay_notice", "cancelled_refunded"]
        assert at(done[1]) >= expiries(done[0])["wait:None"] - timedelta(seconds=1)


async def test_a_sellers_folder_writes_to_its_customers_in_their_language(
    seller_stack: Stack,
) -> None:
    stack = seller_stack
    sku, french, german = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku, name="Bouilloire bleue")
    now = datetime.now(UTC)
    customer = {"id": "c-fr", "email": "fr@example.com", "locale": "fr-CA"}
    await start(
        stack, french, sku, ordered_at=now, ship_by=now + timedelta(seconds=40), customer=customer
    )
    await start(
        stack,
        german,
        sku,
        ordered_at=now,
        ship_by=now + timedelta(seconds=40),
        customer={"id": "c-de", "email": "de@example.com", "locale": "de"},
    )
    bad = backorder(new_id(), sku, customer={"id": "c", "email": "x@example.com", "locale": "x_Y"})
    refused = await stack.api.post("/v1/backorders", json=bad, headers=stack.auth("order"))

    [fr] = await eventually(lambda: sent(stack, french), bool, within=20, what="the French one")
    [de] = await eventually(lambda: sent(stack, german), bool, within=20, what="the German one")
    assert fr["body"]["subject"] == f"Commande {french} : Bouilloire bleue arrive bientôt"
    assert "Nous vous écrirons avant le" in fr["body"]["body"]
    assert "Boutique Exemple" in fr["body"]["html"]
    assert de["body"]["subject"] == f"Bestellung {german}: Bouilloire bleue ist nachbestellt"
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "customer", "locale"]
    line = await stack.line(french)
    assert line["messages"][0]["subject"] == fr["body"]["subject"]
