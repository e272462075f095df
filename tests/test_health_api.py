"""Marketplace health as operations read it: `/v1/metrics`, the Prometheus scrape and
`backorders health`, for a history of lines seeded by hand; and a buyer's cancel relayed by the
order system, recorded as the buyer's and not held against the seller.

The seeded history (Amazon, ages relative to now):

| lines | what | 7 d | 10 d | 30 d |
|---|---|---|---|---|
| 24 | shipped on time 2 days ago, tracked | x | x | x |
| 1 | shipped late 2 days ago, tracked | x | x | x |
| 24 | shipped on time 20 days ago, tracked | | | x |
| 1 | shipped on time 20 days ago, no tracking number | | | x |
| 1 | cancelled a day ago by the customer (excused) | x | x | x |
| 1 | cancelled a day ago by ops (held against the seller) | x | x | x |

and on Walmart 9 lines shipped on time and 1 late, 3 days ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.stack import serve
from client.http import ApiClient
from config.settings import Settings
from domain.health import MarketplaceHealth
from domain.line.state import LineState
from domain.values import Channel
from store import health
from store.db import open_store
from tests.support.cli import environment, run_cli
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, backorder, new_id
from tests.support.seed import DAY, Seed
from tests.support.stack import Stack, free_port

AMAZON_EXPECTED = {
    # (figure, window): (numerator, denominator, headroom, status), counted by hand:
    # 10 d late: 1 of 25 is 4 %, not under 4 %: over; without that one, 0 of 24 meets it.
    ("late_shipment", 10): (1, 25, -1, "over"),
    # 30 d late: 1 of 50 is 2 %; 2 of 51 is 3.9 % (meets), 3 of 52 is 5.8 % (misses): 1 more.
    ("late_shipment", 30): (1, 50, 1, "ok"),
    # 7 d cancels: the ops cancel of 27 ended lines (25 shipped, 2 cancelled) is 3.7 % of
    # < 2.5 %: over; the buyer's is not held against the seller. 0 of 26 meets it.
    ("cancellation", 7): (1, 27, -1, "over"),
    # 30 d tracking: 49 of 50 shipments tracked, 98 %; 49 of 51 is 96.1 % (meets), 49 of 52
    # is 94.2 % (misses): 1 more untracked shipment.
    ("valid_tracking", 30): (49, 50, 1, "ok"),
}


@pytest.fixture
async def seeded(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[str, datetime]]:
    """An API on a store of its own holding only the seeded history; its URL and the seeding's
    now."""
    settings = Settings(
        state_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        api_port=free_port(),
        order_system_token=ORDER_TOKEN,
        ops_token=OPS_TOKEN,
    )
    db = open_store(settings, embedded=True)
    now = datetime.now(UTC)
    seed = Seed(db)
    amazon, walmart = Channel.AMAZON, Channel.WALMART
    for index in range(24):
        seed.shipped(amazon, at=now - 2 * DAY - index * timedelta(minutes=1))
        seed.shipped(amazon, at=now - 20 * DAY - index * timedelta(minutes=1))
    seed.shipped(amazon, at=now - 2 * DAY, late=True)
    seed.shipped(amazon, at=now - 20 * DAY, tracking=" ")
    seed.cancelled(amazon, at=now - DAY, by="customer")
    seed.cancelled(amazon, at=now - DAY, by="ops")
    for index in range(10):
        seed.shipped(walmart, at=now - 3 * DAY - index * timedelta(minutes=1), late=index == 0)
    server = await serve(
        create_app(settings, temporal=temporal_env.client, db=db), "127.0.0.1", settings.api_port
    )
    try:
        yield f"http://127.0.0.1:{settings.api_port}", now
    finally:
        await server.stop()
        db.dispose()


async def test_health_figures_of_a_seeded_history_through_the_api_prometheus_and_the_cli(
    seeded: tuple[str, datetime],
) -> None:
    url, _ = seeded
    async with ApiClient(url, OPS_TOKEN) as api:
        metrics = await api.metrics()
        scrape = await api.prometheus()
    assert metrics.marketplace_health is not None
    figures = {
        (channel.value, figure.figure.value, figure.window_days): figure
        for channel, figure in metrics.marketplace_health.figures()
    }
    for (kind, days), expected in AMAZON_EXPECTED.items():
        figure = figures[("amazon", kind, days)]
        got = (figure.numerator, figure.denominator, figure.headroom_orders, figure.status.value)
        assert got == expected, (kind, days)
    assert figures[("amazon", "cancellation", 7)].cancelled_by == {"customer": 1, "ops": 1}
    # Walmart on time: 9 of 10 is exactly 90 %, which ">= 90 %" allows, with no bad order to
    # spare, and within the warning margin.
    walmart = figures[("walmart", "on_time_shipment", 30)]
    assert (walmart.numerator, walmart.denominator, walmart.headroom_orders) == (9, 10, 0)
    assert (walmart.ratio, walmart.threshold, walmart.status.value) == (0.9, 0.9, "warning")

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }

    def sample(name: str, figure: str, window: str, direction: str = "max") -> float:
        labels = {"channel": "amazon", "figure": figure, "window": window, "direction": direction}
        return samples[(f"backorders_marketplace_health_{name}", tuple(sorted(labels.items())))]

    assert sample("ratio", "late_shipment", "10d") == 0.04
    assert sample("threshold", "late_shipment", "10d") == 0.04
    assert sample("headroom_orders", "late_shipment", "10d") == -1
    assert sample("headroom_orders", "valid_tracking", "30d", "min") == 1

    table = await run_cli("health", "--api", url, env=environment(ops_token=OPS_TOKEN))
    assert table.code == 0, table.err
    rows = [line for line in table.out.splitlines() if "amazon" in line and "late_shipment" in line]
    assert len(rows) == 2
    ten_days = next(row for row in rows if "10 d" in row)
    assert all(part in ten_days for part in ("4.00 % (1 of 25)", "< 4.00 %", "-1 orders", "over"))
    (cancels,) = [line for line in table.out.splitlines() if "amazon" in line and "cancel" in line]
    assert "3.70 % (1 of 27); cancelled by customer 1, ops 1" in cancels
    as_json = await run_cli("health", "--api", url, "--json", env=environment(ops_token=OPS_TOKEN))
    assert as_json.code == 0, as_json.err
    printed = MarketplaceHealth.model_validate(as_json.json())

    def counted(of: MarketplaceHealth) -> list[tuple[object, ...]]:
        """What a later read may not change (its instant may)."""
        return [
            (channel, f.figure, f.window_days, f.numerator, f.denominator, f.headroom_orders)
            for channel, f in of.figures()
        ]

    assert counted(printed) == counted(metrics.marketplace_health)


async def test_a_buyer_cancel_relayed_by_the_order_system_is_the_buyers_and_not_a_defect(
    stack: Stack,
) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku, 0)
    relayed, seller, web = new_id(), new_id(), new_id()
    ship_by = datetime.now(UTC) + timedelta(days=20)
    for order_id, channel in ((relayed, "amazon"), (seller, "amazon"), (web, "web")):
        body = backorder(order_id, sku, channel=channel, ship_by=ship_by)
        assert (await stack.start(body)).status_code == 201
        await stack.wait_state(order_id, "waiting")
    before = await asyncio.to_thread(health.collect, stack.db, stack.admission().policy)

    answer = await stack.cancel(relayed, reason="asked on Amazon", buyer_requested=True)
    assert answer.status_code == 200, answer.text
    assert (await stack.cancel(seller, reason="out of stock")).status_code == 200
    assert (await stack.cancel(web, buyer_requested=True)).status_code == 200
    forged = await stack.cancel(relayed, actor="acme", buyer_requested=True)
    assert forged.status_code in (401, 403)

    lines = {order_id: await stack.line(order_id) for order_id in (relayed, seller, web)}
    assert lines[relayed]["state"] == LineState.CANCELLED
    assert (lines[relayed]["cancelled_by"], lines[relayed]["buyer_requested_cancel"]) == (
        "customer",
        True,
    )
    assert lines[relayed]["cancel_reason"] == "asked on Amazon (the buyer asked; via order_system)"
    assert (lines[seller]["cancelled_by"], lines[seller]["buyer_requested_cancel"]) == (
        "order_system",
        False,
    )
    # The own web store has no marketplace to route a cancel to.
    assert (lines[web]["cancelled_by"], lines[web]["buyer_requested_cancel"]) == ("customer", None)

    after = await asyncio.to_thread(health.collect, stack.db, stack.admission().policy)

    def amazon_cancels(of: MarketplaceHealth) -> tuple[int, int, dict[str, int]]:
        (figure,) = [
            figure
            for channel, figure in of.figures()
            if channel is Channel.AMAZON and figure.figure.value == "cancellation"
        ]
        return figure.bad, figure.denominator, figure.cancelled_by or {}

    bad_before, total_before, by_before = amazon_cancels(before)
    bad_after, total_after, by_after = amazon_cancels(after)
    assert (bad_after - bad_before, total_after - total_before) == (1, 2)
    assert by_after.get("customer", 0) - by_before.get("customer", 0) == 1
    assert by_after.get("order_system", 0) - by_before.get("order_system", 0) == 1
