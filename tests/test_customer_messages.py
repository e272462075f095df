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
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import api
from domain.contract.lines import line_key
from domain.links import LinkAction, page_claims, sign
from tests.support.factories import backorder, new_id
from tests.support.messages import RECEIVING, at, inbound, sent
from tests.support.poll import eventually
from tests.support.stack import Stack, running_stack

TEMPLATES = Path(__file__).parent / "data" / "templates"
STATUS_LINK = re.compile(r"(http://\S+/v1/status/\S+)")


FRENCH_WORDS = {
    '"Order"': '"Commande"',
    '"On backorder: waiting for stock"': '"En réapprovisionnement : en attente de stock"',
}
"""The seller's French status page: the shipped English words, a few of them translated."""


@pytest.fixture(scope="module")
async def seller_stack(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("templates")
    shutil.copytree(TEMPLATES, folder, dirs_exist_ok=True)
    words = (Path(api.__file__).parent / "templates" / "en" / "status.html").read_text()
    for english, french in FRENCH_WORDS.items():
        words = words.replace(english, french)
    (folder / "fr" / "status.html").write_text(words)
    async with running_stack(
        "sqlite", temporal_env, settings_overrides={"templates_dir": folder}
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


async def bare_and_supplied(stack: Stack, bare: str, supplied: str) -> tuple[datetime, str, str]:
    """Now, a SKU named `bare` with nothing inbound, and one named `supplied` with a unit
    inbound that dates a line a day and 4 s from now (the stack's supply runs on real days)."""
    skus = new_id("sku"), new_id("sku")
    for sku, name in zip(skus, (bare, supplied), strict=True):
        await stack.put_sku(sku, name=name)
    now = datetime.now(UTC)
    await inbound(stack, skus[1], 1, now + RECEIVING + timedelta(seconds=4))
    return now, *skus


def moments(messages: list[dict[str, Any]], within: float = 0.5) -> list[list[str]]:
    """The kinds of the messages, grouped by the moment they went out at (those sent within
    `within` seconds of a moment's first message belong to it)."""
    grouped: list[list[str]] = []
    began: datetime | None = None
    for message in messages:
        if began is None or at(message) - began > timedelta(seconds=within):
            began = at(message)
            grouped.append([])
        grouped[-1].append(message["body"]["kind"])
    return grouped


async def test_each_situation_gets_one_message_per_moment_and_no_date_without_a_basis(
    seller_stack: Stack,
) -> None:
    """Over the lives of four lines (supply inbound in time, none inbound, ship-by already past,
    a marketplace's deadline near), each moment is one message; only the line that supply
    dates is confirmed, the others start with the option notice; no link in any message (the
    answer-by of a notice, an offer, the cancel) is already gone when it is sent."""
    stack = seller_stack
    now, sku, supplied = await bare_and_supplied(stack, "Blue kettle", "Red kettle")
    dated, none, past, marketplace = (new_id() for _ in range(4))
    await asyncio.gather(
        start(stack, dated, supplied, ordered_at=now, ship_by=now + timedelta(days=3)),
        # Notice at the start; the apology 1 s before ship-by; cancelled at ship-by.
        start(stack, none, sku, ordered_at=now, ship_by=now + timedelta(seconds=6)),
        # Notice and the apology already due in one; cancelled at its answer-by.
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
    ends = {dated: 1, none: 3, past: 2, marketplace: 2}
    for order, count in ends.items():
        await eventually(
            partial(sent, stack, order),
            lambda m, count=count: len(m) >= count,  # type: ignore[misc]
            within=20,
            what=f"{order}'s messages",
        )
    await asyncio.sleep(1)  # the fast policy's quiet period: anything more would show
    lives = {order: await sent(stack, order) for order in ends}

    assert {order: moments(messages) for order, messages in lives.items()} == {
        dated: [["backorder_confirmation"]],
        none: [["delay_notice"], ["apology_offer"], ["cancelled_refunded"]],
        past: [["delay_notice"], ["cancelled_refunded"]],
        marketplace: [["delay_notice"], ["cancelled_refunded"]],
    }
    assert "expected to ship by" in lives[dated][0]["body"]["subject"]
    assert "Expected ship date:" in lives[dated][0]["body"]["body"]
    # No supply inbound: no date has a basis, so the first message is the option notice.
    for order in (none, past):
        notice = lives[order][0]["body"]["body"]
        assert "no delivery of it is scheduled yet" in notice, notice
        assert "cannot give you a new date" in notice and "please tell us before" in notice
        assert "right to cancel" in notice and "expected" not in notice.lower()
    assert "Blue kettle" in lives[none][0]["body"]["subject"]
    assert "10% off your next order" in lives[past][0]["body"]["body"]  # the rung was due
    assert "marketplace" in lives[marketplace][0]["body"]["body"]
    for messages in lives.values():
        for message in messages:
            for name, expires in expiries(message).items():
                assert expires > at(message), f"{message['body']['kind']}: {name} already gone"
    # Nobody answered: each notice's line is cancelled at its answer-by.
    for order in (none, past, marketplace):
        notice, cancelled = lives[order][0], lives[order][-1]
        assert at(cancelled) >= expiries(notice)["wait:None"] - timedelta(seconds=1)


async def test_a_sellers_folder_writes_to_its_customers_in_their_language(
    seller_stack: Stack,
) -> None:
    stack = seller_stack
    sku, unsupplied, french, german = new_id("sku"), new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku, name="Bouilloire bleue")
    await stack.put_sku(unsupplied, name="Bouilloire bleue")
    now = datetime.now(UTC)
    # Supply inbound dates the French line (a confirmation with its date); nothing dates the
    # German one (the option notice).
    await inbound(stack, sku, 1, now + RECEIVING + timedelta(seconds=4))
    customer = {"id": "c-fr", "email": "fr@example.com", "locale": "fr-CA"}
    await start(
        stack, french, sku, ordered_at=now, ship_by=now + timedelta(days=3), customer=customer
    )
    await start(
        stack,
        german,
        unsupplied,
        ordered_at=now,
        ship_by=now + timedelta(seconds=40),
        customer={"id": "c-de", "email": "de@example.com", "locale": "de"},
    )
    bad = backorder(new_id(), sku, customer={"id": "c", "email": "x@example.com", "locale": "x_Y"})
    refused = await stack.api.post("/v1/backorders", json=bad, headers=stack.auth("order"))

    [fr] = await eventually(lambda: sent(stack, french), bool, within=20, what="the French one")
    [de] = await eventually(lambda: sent(stack, german), bool, within=20, what="the German one")
    assert fr["body"]["subject"] == f"Commande {french} : Bouilloire bleue arrive bientôt"
    assert "Expédition prévue le" in fr["body"]["body"]
    assert "Boutique Exemple" in fr["body"]["html"]
    assert de["body"]["subject"] == (
        f"Bestellung {german}: Bouilloire bleue ist nachbestellt und verspätet sich, bitte lesen"
    )
    assert "Es ist noch keine Lieferung an uns geplant" in de["body"]["body"], de["body"]["body"]
    assert "keinen neuen Termin" in de["body"]["body"]
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "customer", "locale"]
    line = await stack.line(french)
    assert line["messages"][0]["subject"] == fr["body"]["subject"]

    # Their status pages: the seller's French words for the one, the shipped German for the
    # other, each with dates and money for the customer's locale.
    claims = page_claims(line_key(french, "1"), LinkAction.STATUS, now)
    french_page = await stack.api.get(f"/v1/status/{sign(stack.settings.signing_key, claims)}")
    assert french_page.status_code == 200, french_page.text
    assert '<html lang="fr-CA">' in french_page.text
    assert "En réapprovisionnement : en attente de stock" in french_page.text
    assert "décembre" in french_page.text  # the expected date, in French
    link = STATUS_LINK.search(de["body"]["body"])
    assert link is not None, de["body"]["body"]
    german_page = await stack.api.get(link.group(1))
    assert german_page.status_code == 200, german_page.text
    assert '<html lang="de">' in german_page.text
    assert "Nachbestellt: wartet auf Ware" in german_page.text
    assert "19,99\xa0$" in german_page.text and "Weiter warten" in german_page.text
