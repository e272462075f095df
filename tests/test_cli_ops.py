"""`backorders status|list|cancel|metrics` as a script runs them: a subprocess talking to the
stack's HTTP API with the ops token from the environment; output and exit codes checked."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.factories import OPS_TOKEN, backorder, hours_ago, new_id
from tests.support.stack import Stack

SCRIPT = Path(sys.executable).parent / "backorders"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def cli(stack: Stack, *args: str, token: str = OPS_TOKEN, api: str | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    env |= {"BACKORDERS_OPS_TOKEN": token, "COLUMNS": "200"}
    base = api or str(stack.api.base_url).rstrip("/")
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        "--api",
        base,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


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
    line = await stack.wait_state(ids["web"], "cancelled")
    assert line["cancel_reason"] == "ops test"
    again = await cli(stack, "cancel", ids["web"], "1")
    assert again.code == 5
    assert "cancel" in again.err


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
