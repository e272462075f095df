"""`backorders status|list|cancel|metrics` as a script runs them: a subprocess talking to the
stack's HTTP API with the ops token from the environment; output and exit codes checked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.support.busy import Rule, busy_front
from tests.support.cli import Run, environment, run_cli
from tests.support.factories import OPS_TOKEN, backorder, hours_ago, new_id
from tests.support.stack import Stack


async def cli(stack: Stack, *args: str, token: str = OPS_TOKEN, api: str | None = None) -> Run:
    base = api or stack.api.base_url
    return await run_cli(*args, "--api", base, env=environment(ops_token=token))


async def _lines(stack: Stack) -> dict[str, str]:
    """Three lines on one new SKU: web waiting, amazon waiting, web overdue (ship-by passed)."""
    sku = new_id("sku")
    await stack.put_sku(sku, 0)
    ids = {"web": new_id(), "amazon": new_id(), "overdue": new_id(), "sku": sku}
    now = datetime.now(UTC)
    bodies = [
        backorder(ids["web"], sku, ship_by=now + timedelta(days=20)),
        backorder(ids["amazon"], sku, channel="amazon", ship_by=now + timedelta(days=20)),
        backorder(ids["overdue"], sku, ordered_at=hours_ago(5), ship_by=hours_ago(1)),
    ]
    for body in bodies:
        assert (await stack.start(body)).status_code == 201
    for key in ("web", "amazon", "overdue"):
        await stack.wait_state(ids[key], "waiting")
    return ids


async def test_status_shows_a_line_as_a_table_and_as_json(stack: Stack) -> None:
    ids = await _lines(stack)
    table = await cli(stack, "status", ids["web"], "1")
    assert table.code == 0, table.err
    assert "waiting" in table.out and f"1 x {ids['sku']}" in table.out
    as_json = await cli(stack, "status", ids["web"], "1", "--json")
    assert as_json.code == 0
    assert as_json.json()["state"] == "waiting"
    assert as_json.json()["order_id"] == ids["web"]


async def test_list_filters_by_sku_channel_state_and_overdue(stack: Stack) -> None:
    ids = await _lines(stack)

    async def listed(*filters: str) -> set[str]:
        run = await cli(stack, "list", "--sku", ids["sku"], *filters, "--json")
        assert run.code == 0, run.err
        return {line["order_id"] for line in run.json()}

    assert await listed() == {ids["web"], ids["amazon"], ids["overdue"]}
    assert await listed("--channel", "amazon") == {ids["amazon"]}
    assert await listed("--overdue") == {ids["overdue"]}
    assert await listed("--state", "shipped") == set()
    table = await cli(stack, "list", "--sku", ids["sku"])
    assert table.code == 0
    assert all(ids[key] in table.out for key in ("web", "amazon", "overdue"))
    assert "3 lines" in table.out


async def test_cancel_then_cancel_again_is_refused_with_its_own_exit_code(stack: Stack) -> None:
    ids = await _lines(stack)
    first = await cli(stack, "cancel", ids["web"], "1", "--reason", "ops test", "--json")
    assert first.code == 0, first.err
    assert first.json()["state"] == "cancelled"
    line = await stack.wait_state(ids["web"], "cancelled")
    assert (line["cancel_reason"], line["cancelled_by"]) == ("ops test", "ops")
    again = await cli(stack, "cancel", ids["web"], "1")
    assert again.code == 5
    assert "cancel" in again.err


async def test_cancel_prints_what_it_did_as_a_table(stack: Stack) -> None:
    ids = await _lines(stack)
    await stack.receive(ids["sku"], 1)  # the oldest line (overdue) holds it, the web line none
    await stack.wait_state(ids["overdue"], "shipped")

    table = await cli(stack, "cancel", ids["amazon"], "1", "--reason", "ops test")

    assert table.code == 0, table.err
    assert f"{ids['amazon']}/1: cancelled" in table.out
    assert "state" in table.out and "cancelled" in table.out
    assert "released to the queue" in table.out and "0 units" in table.out
    assert "19.99 USD for 1 units" in table.out
    assert table.err == ""


async def test_a_command_asks_again_after_a_503_with_retry_after_and_says_so(
    stack: Stack,
) -> None:
    ids = await _lines(stack)
    held = Rule("GET", f"/v1/backorders/{ids['web']}/1", times=2)
    lost = Rule("POST", f"/v1/backorders/{ids['amazon']}/1/cancel", times=1, after=True)
    async with busy_front(stack.api.base_url, held, lost) as front:
        status = await cli(stack, "status", ids["web"], "1", api=front.url)
        cancel = await cli(stack, "cancel", ids["amazon"], "1", api=front.url)

    assert status.code == 0, status.err
    assert "waiting" in status.out
    assert "asked again 2 times (503 x2); 1 request retried and answered, 0 failed" in status.err
    # The cancel took effect before its answer was lost: asked again, the line says so (409).
    assert cancel.code == 5, cancel.out + cancel.err
    assert "asked again 1 time (503 x1)" in cancel.err
    assert (await stack.line(ids["amazon"]))["state"] == "cancelled"


async def test_a_503_that_never_ends_fails_with_exit_1_after_bounded_retries(
    stack: Stack,
) -> None:
    held = Rule("GET", "/v1/metrics", times=100)
    async with busy_front(stack.api.base_url, held) as front:
        began = asyncio.get_running_loop().time()
        run = await cli(stack, "metrics", api=front.url)
        took = asyncio.get_running_loop().time() - began

    assert run.code == 1
    assert "the API answered 503 (asked 5 times)" in run.err
    assert "0 requests retried and answered, 1 failed" in run.err
    assert took < 40


async def test_exit_codes_scripts_can_trust(stack: Stack) -> None:
    missing = await cli(stack, "status", new_id("none"), "1")
    assert missing.code == 3 and missing.out == ""
    wrong = await cli(stack, "status", new_id("none"), "1", token="not-the-ops-token")
    assert wrong.code == 4
    assert "BACKORDERS_OPS_TOKEN" in wrong.err and "not-the-ops-token" not in wrong.err
    down = await cli(stack, "metrics", api="http://127.0.0.1:9")
    assert down.code == 1 and "did not answer" in down.err
    usage = await cli(stack, "list", "--state", "lost")
    assert usage.code == 2


async def test_metrics_command_prints_the_api_figures(stack: Stack) -> None:
    run = await cli(stack, "metrics", "--json")
    assert run.code == 0, run.err
    figures = run.json()
    assert set(figures) >= {"open_lines", "cancellation_rate", "messages_sent"}
    table = await cli(stack, "metrics")
    assert table.code == 0
    assert "cancellation rate" in table.out and "open: waiting" in table.out
