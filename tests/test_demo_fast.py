"""`backorders demo --fast`: its scenario, on a stack running its policy (policy days of two
seconds here, six in the demo), plays every moment of the customer's side, and each
one is in the simulators' records: the messages the notification service got, the renewal the
payment processor authorized, the shipments the carrier booked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from cli.demo import Api
from cli.fast_demo import MOMENTS, fast_policy, play_customer_side
from client.http import ApiClient
from tests.support.stack import TEST_RETRY, Stack, running_stack

DAY_SECONDS = 2.0


@pytest.fixture(scope="module")
async def demo_stack(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """A stack whose API and worker both run the demo's policy, and sweep surveys every second,
    as the demo's own stack does (the worker's policy dates lines from purchase orders)."""
    policy = fast_policy(DAY_SECONDS)
    policy_file = tmp_path_factory.mktemp("fast-demo") / "policy.json"
    policy_file.write_text(json.dumps(policy))
    async with running_stack(
        "sqlite",
        temporal_env,
        fast_policy=policy,
        settings_overrides={"policy_file": policy_file, "survey_sweep_seconds": 1},
    ) as stack:
        yield stack


async def kinds_sent(stack: Stack, line: str) -> list[str]:
    return [row["body"]["kind"] for row in await stack.requests("notifications", line)]


async def test_the_fast_demo_plays_every_moment_of_the_customers_side(demo_stack: Stack) -> None:
    stack = demo_stack
    console = Console(record=True, width=120)
    async with ApiClient(stack.fast.base_url, retry=TEST_RETRY, timeout=30) as client:
        played = await play_customer_side(
            Api(client, stack.settings), console, uuid.uuid4().hex[:6], DAY_SECONDS
        )
    assert played.problems == []
    assert played.missing == [], console.export_text()
    assert sorted(played.moments["survey answered"]) == ["A", "B", "P"]
    assert set(played.status_links) == {"A", "B", "M", "P"}

    a, b, m, p = (played.lines[role] for role in "ABMP")
    for role, line in played.lines.items():
        bodies = [row["body"]["body"] for row in await stack.requests("notifications", line)]
        assert all(played.status_links[role] in body for body in bodies), role
    for line in (a, b):
        sent = await kinds_sent(stack, line)
        for kind in ("delay_notice", "apology_offer", "shipped", "survey"):
            assert sent.count(kind) == 1, (line, sent)
    assert "offer_accepted" in await kinds_sent(stack, a)
    assert "offer_accepted" not in await kinds_sent(stack, b)
    marketplace = await kinds_sent(stack, m)
    assert "choice_request" in marketplace and marketplace[-1] == "cancelled_refunded"
    assert (await stack.line(m.split(":")[1]))["cancelled_by"] == "policy"
    renewals = [
        row for row in await stack.requests("payments", p) if row["path"] == "/authorizations"
    ]
    assert renewals, "the hold of P was never renewed"
    assert [row["path"] for row in await stack.requests("payments", p)].count("/captures") == 1
    carrier = {row["body"]["reference"] for row in await stack.requests("carrier")}
    assert {a, b, p} <= carrier and m not in carrier
    assert set(MOMENTS) <= set(played.moments)
