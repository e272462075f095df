"""The `backorders` console script, run as a user runs it: a subprocess on its own ports and
state folder, talked to over HTTP only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import settings as defaults
from tests.conftest import free_port

SCRIPT = Path(sys.executable).parent / "backorders"
ORDER = {"Authorization": f"Bearer {defaults.DEFAULT_ORDER_SYSTEM_TOKEN}"}
OPS = {"Authorization": f"Bearer {defaults.DEFAULT_OPS_TOKEN}"}
SUPPLIER_TOKENS = dict(entry.split("=") for entry in defaults.DEFAULT_SUPPLIER_TOKENS.split(","))
ACME = {"Authorization": f"Bearer {SUPPLIER_TOKENS['acme']}"}


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


def wait_until(check: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    """Poll `check` until it returns something truthy; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def healthy(http: httpx.Client) -> bool:
    return http.get("/healthz").status_code == 200


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


def test_dev_stops_on_ctrl_c_and_resumes_waiting_lines_after_a_restart(
    stack_env: Env, dev: Callable[[], subprocess.Popen[bytes]]
) -> None:
    sku, order = f"cli-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    line = {
        "order_id": order,
        "line_id": "1",
        "sku": sku,
        "quantity": 2,
        "unit_price": "12.50",
        "currency": "USD",
        "channel": "web",
        "customer": {"id": "c1", "email": "c1@example.com", "tier": "standard"},
        "ordered_at": datetime.now(UTC).isoformat(),
    }
    with httpx.Client(base_url=stack_env.api, timeout=30) as http:

        def read_line() -> dict[str, Any]:
            body: dict[str, Any] = http.get(f"/v1/backorders/{order}/1", headers=ORDER).json()
            return body

        first = dev()
        wait_until(lambda: healthy(http), "the API to answer /healthz")
        put = http.put(f"/v1/skus/{sku}", json={"name": "Mug", "free_stock": 0}, headers=OPS)
        assert put.status_code == 201, put.text
        started = http.post("/v1/backorders", json=line, headers=ORDER)
        assert started.status_code == 201, started.text
        wait_until(lambda: read_line()["state"] == "waiting", "the line to wait for stock")
        assert stop(first) == 0

        second = dev()
        wait_until(lambda: healthy(http), "the restarted API to answer /healthz")
        assert read_line()["state"] == "waiting"
        receipt = {"receipt_id": "r1", "sku": sku, "quantity": 2}
        received = http.post("/v1/suppliers/acme/receipts", json=receipt, headers=ACME)
        assert received.status_code == 201, received.text
        # The state changes when the units ship; the message is told after: wait for both.
        wait_until(lambda: len(read_line()["messages"]) == 2, "the line to ship after restart")
        shipped = read_line()
        assert shipped["state"] == "shipped" and shipped["shipped_quantity"] == 2
        assert [m["kind"] for m in shipped["messages"]] == ["backorder_confirmation", "shipped"]

        # The worker's SDK metrics: its runtime serves them on their own port.
        sdk = f"http://{stack_env.variables['BACKORDERS_SDK_METRICS_ADDRESS']}/metrics"
        scraped = httpx.get(sdk, timeout=10).text
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
