"""Every business metric against a scenario counted by hand, on a store of its own.

The scenario (one fresh store per backend, so earlier tests' lines do not count):

| line | API | SKU | ordered | ship-by | what happens | outcome |
|---|---|---|---|---|---|---|
| A1 x2 | real days | A | 10 h ago | +16 d | receipt R1 | shipped on time |
| A2 | real days | A | 30 h ago | +20 d | nothing arrives for it | open, waiting |
| A3 | real days | A | 40 h ago | +15 d | cancelled by the order system | cancelled |
| A4 | real days | A | 50 h ago | +17 d | receipt R1 | shipped on time |
| A5 | real days | A | 5 h ago | +25 d | cancelled by the order system | cancelled |
| F1 | seconds | C | now | +10 s | takes the offered discount; ships after ship-by | late |
| F2 | seconds | D | now | +10 s | silent to the offer and the delay notice | deadline cancel |

Receipts: R1 3 x A (all to A1 and A4), R2 2 x B (nobody waits: free stock), R3 1 x C (to F1).
No line has supply inbound as it starts: each starts with the delay-option notice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.factories import apology_policy, backorder, hours_ago, new_id
from tests.support.stack import Stack, running_stack

HOUR = 3600.0
SLACK = 600.0
"""Seconds the scenario may take between writing `ordered_at` and reading the metrics."""

SECONDS_POLICY = apology_policy(
    offer_after=2, ship_in=10, delay={"notice_lead_days": 2, "silent_consent_days": 30}
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def fresh(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    async with running_stack(request.param, temporal_env, fast_policy=SECONDS_POLICY) as stack:
        yield stack


async def _start(stack: Stack, body: dict[str, Any], *, fast: bool = False) -> None:
    api = stack.fast if fast else stack.api
    response = await api.post("/v1/backorders", json=body, headers=stack.auth("order"))
    assert response.status_code == 201, response.text


async def _metrics(stack: Stack) -> dict[str, Any]:
    response = await stack.api.get("/v1/metrics", headers=stack.auth("ops"))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _run_scenario(stack: Stack) -> dict[str, str]:
    """Play the table above; returns the order id of each line by its name."""
    ids = {name: new_id(name.lower()) for name in ("A1", "A2", "A3", "A4", "A5", "F1", "F2")}
    skus = {sku: new_id(f"sku{sku}") for sku in "ABCD"}
    for sku in skus.values():
        await stack.put_sku(sku, 0)
    now = datetime.now(UTC)
    plan = {
        "A1": (2, 10, 16),
        "A2": (1, 30, 20),
        "A3": (1, 40, 15),
        "A4": (1, 50, 17),
        "A5": (1, 5, 25),
    }
    for name, (quantity, hours, days) in plan.items():
        body = backorder(
            ids[name],
            skus["A"],
            quantity,
            ordered_at=hours_ago(hours),
            ship_by=now + timedelta(days=days),
        )
        await _start(stack, body)
    ship_by = now + timedelta(seconds=10)
    for name, sku in (("F1", "C"), ("F2", "D")):
        body = backorder(ids[name], skus[sku], ordered_at=now, ship_by=ship_by)
        await _start(stack, body, fast=True)

    for name in ("A3", "A5"):
        await stack.wait_state(ids[name], "waiting")
        cancelled = await stack.cancel(ids[name])
        assert cancelled.status_code in (200, 202), cancelled.text
        await stack.finished(ids[name])
    assert (await stack.receive(skus["A"], 3, receipt_id=new_id("r1"))).status_code == 201
    assert (await stack.receive(skus["B"], 2, receipt_id=new_id("r2"))).status_code == 201

    offered = await stack.wait_line(ids["F1"], lambda line: bool(line["offers"]), within=30)
    offer_id = offered["offers"][0]["offer_id"]
    accepted = await stack.api.post(
        f"/v1/backorders/{ids['F1']}/1/offers/{offer_id}/accept", headers=stack.auth("ops")
    )
    assert accepted.status_code == 200, accepted.text

    await stack.finished(ids["F2"], within=60)
    assert (await stack.line(ids["F2"]))["state"] == "cancelled"
    # F1 consented: it waits past its ship-by, and then the stock arrives.
    await asyncio.sleep(max(0.0, (ship_by - datetime.now(UTC)).total_seconds()) + 1)
    assert (await stack.receive(skus["C"], 1, receipt_id=new_id("r3"))).status_code == 201
    for name in ("A1", "A4", "F1"):
        line = await stack.finished(ids[name], within=60)
        assert line["state"] == "shipped", line
    return ids


async def test_metrics_match_a_hand_counted_scenario(fresh: Stack) -> None:
    await _run_scenario(fresh)
    figures = await _metrics(fresh)

    assert figures["open_lines"] == {
        "received": 0,
        "waiting": 1,
        "partially_allocated": 0,
        "allocated": 0,
        "partially_shipped": 0,
    }
    assert figures["closed_lines"] == {"shipped": 3, "cancelled": 3}

    age = figures["backorder_age"]
    assert age["count"] == 1
    assert 30 * HOUR <= age["p50_seconds"] == age["p90_seconds"] <= 30 * HOUR + SLACK

    to_ship = figures["time_to_ship"]
    assert to_ship["count"] == 3
    # Sorted: F1 (seconds), A1 (10 h), A4 (50 h); nearest rank: p50 is A1, p90 is A4.
    assert 10 * HOUR <= to_ship["p50_seconds"] <= 10 * HOUR + SLACK
    assert 50 * HOUR <= to_ship["p90_seconds"] <= 50 * HOUR + SLACK

    assert figures["arrival_fill_rate"] == {"numerator": 4, "denominator": 6, "rate": 0.666667}
    assert figures["cancellation_rate"] == {"numerator": 3, "denominator": 6, "rate": 0.5}
    # F1 shipped after its ship-by; F2 was cancelled by the policy at its deadline.
    assert figures["sla_breach_rate"] == {"numerator": 2, "denominator": 6, "rate": 0.333333}
    assert figures["offer_acceptance_rate"] == {"numerator": 1, "denominator": 2, "rate": 0.5}

    sent = {kind: count for kind, count in figures["messages_sent"].items() if count}
    assert sent == {
        # Nothing inbound dates any line as it starts: each line's first message is the notice.
        "delay_notice": 7,
        "apology_offer": 2,
        "offer_accepted": 1,
        "shipped": 3,
        "cancelled_refunded": 3,
    }
    # The same count from the other side: what the notification service accepted.
    accepted = Counter(row["body"]["kind"] for row in await fresh.requests("notifications"))
    assert dict(accepted) == sent

    prometheus = await fresh.api.get("/metrics", headers=fresh.auth("ops"))
    assert prometheus.status_code == 200
    assert prometheus.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _parse_prometheus(prometheus.text)
    assert samples['backorders_open_lines{state="waiting"}'] == 1
    assert samples['backorders_closed_lines{outcome="cancelled"}'] == 3
    assert samples["backorders_cancellation_ratio"] == 0.5
    assert samples["backorders_sla_breach_ratio"] == 0.333333
    assert samples["backorders_arrival_fill_ratio"] == 0.666667
    assert samples["backorders_offer_acceptance_ratio"] == 0.5
    assert samples['backorders_messages_sent_total{kind="shipped"}'] == 3
    assert samples["backorders_time_to_ship_seconds_count"] == 3
    assert samples['backorders_time_to_ship_seconds{quantile="0.5"}'] == to_ship["p50_seconds"]


def _parse_prometheus(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_are_for_operations_only(fresh: Stack) -> None:
    for path in ("/v1/metrics", "/metrics"):
        assert (await fresh.api.get(path)).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await fresh.api.get(path, headers=bad)).status_code == 401
        for actor in ("order", "acme"):
            assert (await fresh.api.get(path, headers=fresh.auth(actor))).status_code == 403
        assert (await fresh.api.get(path, headers=fresh.auth("ops"))).status_code == 200


async def test_empty_store_has_no_rates_rather_than_zero(temporal_env: WorkflowEnvironment) -> None:
    """With nothing closed, a rate is unknown (null; absent in Prometheus), not 0 % or 100 %."""
    async with running_stack("sqlite", temporal_env) as stack:
        figures = await _metrics(stack)
        assert figures["cancellation_rate"] == {"numerator": 0, "denominator": 0, "rate": None}
        assert figures["backorder_age"]["p50_seconds"] is None
        text = (await stack.api.get("/metrics", headers=stack.auth("ops"))).text
        assert "\nbackorders_cancellation_ratio " not in text
        assert 'backorders_open_lines{state="waiting"} 0' in text
