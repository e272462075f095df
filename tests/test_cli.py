"""The `backorders` console script, run as a user runs it: a subprocess on its own ports and
state folder, talked to over HTTP only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from client.http import NO_RETRY, ApiClient, ApiError
from config import settings as defaults
from tests.support.busy import Rule, busy_front
from tests.support.cli import SCRIPT, environment, run_cli
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, SUPPLIER_TOKENS, backorder
from tests.support.factories import receipt as receipt_body
from tests.support.poll import eventually
from tests.support.stack import Stack, free_port

DEV_ORDER_TOKEN = defaults.DEFAULT_ORDER_SYSTEM_TOKEN
DEV_OPS_TOKEN = defaults.DEFAULT_OPS_TOKEN
DEV_ACME_TOKEN = dict(entry.split("=") for entry in defaults.DEFAULT_SUPPLIER_TOKENS.split(","))[
    "acme"
]
ERRORS = (ApiError, httpx.TransportError)
"""What a stack still starting answers."""


@dataclass
class Env:
    """The environment of one embedded stack: its own ports and state folder."""

    variables: dict[str, str]
    api_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@pytest.fixture
def stack_env(tmp_path: Path) -> Env:
    # Settings of the developer's shell must not leak in: the test uses the documented defaults.
    variables = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    api_port = free_port()
    variables |= {
        "BACKORDERS_STATE_DIR": str(tmp_path / "state"),
        "BACKORDERS_API_PORT": str(api_port),
        "BACKORDERS_TEMPORAL_PORT": str(free_port()),
        "BACKORDERS_UI_PORT": str(free_port()),
        "BACKORDERS_SIMULATOR_PORT": str(free_port()),
        "BACKORDERS_SDK_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    return Env(variables, api_port)


def command(*args: str) -> list[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the project with `pip install -e .`"
    return [str(SCRIPT), *args]


@pytest.fixture
def dev(stack_env: Env, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts `backorders dev`; whatever is still running at the end is stopped."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"dev-{len(started)}.log")
        output = logs[-1].open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own console script
            command("dev"), env=stack_env.variables, stdout=output, stderr=subprocess.STDOUT
        )
        output.close()  # the child holds its own copy
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for log in logs:  # pytest shows this only when the test failed
        print(f"---- {log.name}\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(30)


def test_demo_starts_its_own_stack_and_accounts_for_every_line(stack_env: Env) -> None:
    done = subprocess.run(  # noqa: S603 - our own console script
        command("demo", "--lines", "40", "--no-keep"),
        env=stack_env.variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    def count(label: str) -> int:
        found = re.search(rf"{label}\D+(\d+)", done.stdout)
        assert found, f"no {label!r} in the summary:\n{output}"
        return int(found.group(1))

    assert count("Lines started") == 40
    outcomes = ["Shipped", "Partially shipped", "Waiting", "Cancelled"]
    assert sum(count(label) for label in outcomes) == 40, output
    assert count("Shipped") > 0
    assert count("Cancelled") > 0
    assert "Not recorded" not in done.stdout
    assert "/namespaces/default/workflows" in done.stdout


async def test_dev_stops_on_ctrl_c_and_resumes_waiting_lines_after_a_restart(
    stack_env: Env, dev: Callable[[], subprocess.Popen[bytes]]
) -> None:
    sku, order = f"cli-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    line = backorder(order, sku, quantity=2, unit_price="12.50")
    async with ApiClient(stack_env.api, timeout=30, retry=NO_RETRY) as api:
        ops, orders = api.as_token(DEV_OPS_TOKEN), api.as_token(DEV_ORDER_TOKEN)

        async def healthy() -> bool:
            return (await api.health()).status == "ok"

        first = dev()
        await eventually(healthy, within=45, what="the API to answer /healthz", ignoring=ERRORS)
        created = await ops.put_sku(sku, {"name": "Mug", "free_stock": 0})
        assert created.free_stock == 0
        assert (await orders.start(line)).created
        await eventually(
            lambda: orders.line(order, "1"),
            lambda found: found.state == "waiting",
            within=45,
            what="the line to wait for stock",
        )
        assert stop(first) == 0

        second = dev()
        await eventually(healthy, within=45, what="the restarted API", ignoring=ERRORS)
        assert (await orders.line(order, "1")).state == "waiting"
        receipt = await api.as_token(DEV_ACME_TOKEN).receive("acme", receipt_body(sku, 2, "r1"))
        assert receipt.created
        # The state changes when the units ship; the message is told after: wait for both.
        shipped = await eventually(
            lambda: orders.line(order, "1"),
            lambda found: len(found.messages) == 2,
            within=45,
            what="the line to ship after the restart",
        )
        assert shipped.state == "shipped" and shipped.shipped_quantity == 2
        assert [m.kind for m in shipped.messages] == ["delay_notice", "shipped"]

        # The worker's SDK metrics: its runtime serves them on their own port.
        sdk = f"http://{stack_env.variables['BACKORDERS_SDK_METRICS_ADDRESS']}/metrics"
        scraped = (await api.http.get(sdk)).text
        assert 'task_queue="backorders"' in scraped
        for name in ("temporal_worker_task_slots_available", "temporal_workflow_completed"):
            assert name in scraped, f"{name} missing from {sdk}"
        assert stop(second) == 0


def test_dev_refuses_a_taken_port_naming_the_setting(stack_env: Env) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack_env.api_port))
        taken.listen()
        done = subprocess.run(  # noqa: S603 - our own console script
            command("dev"), env=stack_env.variables, capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {stack_env.api_port} is already in use (BACKORDERS_API_PORT)" in done.stderr


async def test_demo_asks_again_after_503s_and_counts_a_cancel_whose_answer_was_lost(
    stack: Stack,
) -> None:
    """The API's 503 says "asking again is safe": the demo asks again, and a cancel that took
    effect before its answer was lost (asked again: 409, the line is cancelled) is a cancel,
    not a failure. Exit 0, retried and failed requests reported apart."""
    held_start = Rule("POST", "/v1/backorders", times=2)
    lost_cancel = Rule("POST", "/v1/backorders/demo-[^/]+/[^/]+/cancel", times=1, after=True)
    tokens = ",".join(f"{supplier}={token}" for supplier, token in SUPPLIER_TOKENS.items())
    env = environment(ops_token=OPS_TOKEN, order_system_token=ORDER_TOKEN, supplier_tokens=tokens)
    async with busy_front(stack.api.base_url, held_start, lost_cancel) as front:
        run = await run_cli(
            "demo", "--lines", "12", "--api", front.url, "--no-keep", "--timeout", "90", env=env
        )
    output = run.out + run.err

    def count(label: str) -> int:
        found = re.search(rf"{label}\D+(\d+)", run.out)
        assert found, f"no {label!r} in the summary:\n{output}"
        return int(found.group(1))

    lost = sum(1 for name in front.refused if name.endswith("/cancel"))
    assert run.code == 0, output
    assert lost >= 1
    assert count("Retried") >= 2 + lost
    assert count("Failed") == 0
    # Each cancel was asked again after its lost answer: the line is cancelled (a cancel), or
    # had shipped in full first (too late); never a failure, never counted twice.
    too_late = re.search(r"(\d+) cancels came too late", run.out)
    assert too_late, output
    assert count("Cancelled") + int(too_late.group(1)) == lost, output
