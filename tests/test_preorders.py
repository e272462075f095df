"""Preorders: lines started before a SKU's release date ship from the release (plus handling),
hold stock that arrives before it, get no early delay notice, and are told once, under the
law's delay rules, when the release moves later."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.line.book import LineBook
from domain.line.timeline import StepKind
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice
from domain.values import Channel
from store.queue import preorder_eta
from store.supply import preorder_label
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack
from tests.test_supply import label as availability

RELEASE = datetime(2026, 12, 15, 9, tzinfo=UTC)


def test_a_preorder_holds_its_stock_until_the_release_step() -> None:
    body = backorder("o1", "SKU-1", quantity=2, ordered_at=RELEASE - timedelta(days=10))
    request = BackorderRequest.model_validate(body)
    policy = DEFAULT_POLICY.for_channel(Channel.WEB)
    book = LineBook.open(request, policy.ship_by(RELEASE), hold_until=RELEASE)
    book.take(
        AllocationNotice(
            allocation_id=1,
            line_key="backorder:o1:1",
            order_id="o1",
            line_id="1",
            quantity=2,
            source="receipt:acme:r1",
        )
    )

    assert book.fully_allocated and book.shippable() == 0 and not book.has_work()
    step = book.next_step(policy)
    assert step is not None and (step.kind, step.at) == (StepKind.SHIP_AT_RELEASE, RELEASE)
    book.hold_until = None
    assert book.shippable() == 2 and book.next_step(policy) is None


def test_a_release_moved_later_is_news_once_per_date() -> None:
    request = BackorderRequest.model_validate(backorder("o1", "SKU-1"))
    book = LineBook.open(request, RELEASE, hold_until=RELEASE)
    later = RELEASE + timedelta(days=7)

    assert book.move_release(later, later + timedelta(days=3))
    assert (book.hold_until, book.timeline.eta, book.release_news) == (
        later,
        later + timedelta(days=3),
        True,
    )
    book.release_news = False
    assert not book.move_release(later, later + timedelta(days=3)), "a repeated signal"
    assert preorder_label(RELEASE) == "Pre-order: ships from 15 Dec 2026"


def test_a_preorder_eta_is_never_before_its_release_and_never_a_date_already_past() -> None:
    now = datetime.now(UTC)
    ahead = now + timedelta(days=3)
    past = now - timedelta(days=1)

    assert preorder_eta(ahead, None) == now + timedelta(days=3)
    assert preorder_eta(ahead, now + timedelta(days=1)) == now + timedelta(days=3)
    assert preorder_eta(ahead, now + timedelta(days=5)) == now + timedelta(days=5)
    assert preorder_eta(past, None) is None, "a release already past promises nothing"
    assert preorder_eta(None, now) == now, "not a preorder: the queue's date"


async def put_release(stack: Stack, sku: str, release: datetime, **extra: Any) -> None:
    await stack.put_sku(sku, release_at=release.isoformat(), **extra)


async def preorder(stack: Stack, seconds: float) -> tuple[str, str, datetime, dict[str, Any]]:
    """A SKU released in `seconds`, and a line started on it (one policy day: one second),
    once its first message went out."""
    sku, order = new_id("sku"), new_id("pre")
    release = datetime.now(UTC) + timedelta(seconds=seconds)
    await put_release(stack, sku, release)
    shown = await availability(stack, sku)
    assert (shown["status"], shown["label"]) == ("preorder", preorder_label(release))
    started = await stack.fast.post(
        "/v1/backorders", json=backorder(order, sku), headers=stack.auth("order")
    )
    assert started.status_code == 201, started.text
    line = await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
    return sku, order, release, line


async def test_stock_before_the_release_waits_for_it_and_no_notice_goes_early(
    stack: Stack,
) -> None:
    sku, order, release, line = await preorder(stack, 6)
    assert "is on pre-order, ships from" in line["messages"][0]["subject"]
    # Ship-by is the release plus the channel's handling (3 policy days of a second each).
    assert datetime.fromisoformat(line["ship_by"]) - release == timedelta(seconds=3)

    await stack.receive(sku, 1)
    await stack.wait_state(order, "allocated")
    await asyncio.sleep(max(0.0, (release - datetime.now(UTC)).total_seconds() - 1.5))
    assert (await stack.line(order))["shipments"] == [], "held until the release"

    line = await stack.finished(order)
    assert datetime.fromisoformat(line["shipments"][0]["created_at"]) >= release
    assert [message["kind"] for message in line["messages"]] == [
        "backorder_confirmation",
        "shipped",
    ]
    stack.assert_rules(sku)


async def test_a_release_moved_later_tells_each_preorder_once_with_the_delay_notice(
    stack: Stack,
) -> None:
    sku, order, release, line = await preorder(stack, 20)
    promised = datetime.fromisoformat(line["ship_by"])
    assert datetime.fromisoformat(line["eta"]) == promised, "ETA: the release plus handling"

    later = release + timedelta(seconds=5)
    await put_release(stack, sku, later)
    line = await stack.wait_line(order, lambda line: len(line["messages"]) == 2)
    notice = line["messages"][1]
    assert notice["kind"] == "delay_notice"
    # Within the law's silent-consent window (30 policy days past the old date): silence is
    # consent, and the new date is the promise.
    assert "you need do nothing" in notice["body"]
    assert datetime.fromisoformat(line["eta"]) == promised + timedelta(seconds=5)

    await put_release(stack, sku, later)  # the same date again: nothing new to tell
    await asyncio.sleep(1.5)
    assert len((await stack.line(order))["messages"]) == 2
    sku_view = (await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))).json()
    assert datetime.fromisoformat(sku_view["release_at"]) == later
