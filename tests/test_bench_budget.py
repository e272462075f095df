"""`python -m bench.budget` splits a worker profile into a line's steps as the README's budget
table says: each stack to its first matching step, the worker's start left out of the shares,
and the workflow tasks split into their parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.budget import OTHER, SDK_ACTIVATION, STARTUP, budget, report

ROOT = Path(__file__).resolve().parent.parent
RUN = "Runner.run (asyncio/runners.py:118)"
ACTIVATE = "_RunningWorkflow.activate (temporalio/worker/_workflow.py:869)"

PROFILE = [
    f"{RUN};<module> (activities/messages.py:39) 50",
    f"{RUN};_load_unlocked (<frozen importlib._bootstrap>:690) 50",
    "_worker (concurrent/futures/thread.py:83);StoreActivities.record_line.<locals>.<lambda> "
    "(activities/store_activities.py:82);Session.execute (sqlalchemy/orm/session.py:2245) 20",
    f"{RUN};OutsideServices.create_shipment (activities/services.py:178);"
    "ClientRequest.write_bytes (aiohttp/client_reqrep.py:1594) 15",
    f"{RUN};OutsideServices.send_message (activities/services.py:416) 10",
    f"_worker (concurrent/futures/thread.py:83);{ACTIVATE};"
    "TypeAdapter.validate_json (pydantic/type_adapter.py:466) 12",
    f"_worker (concurrent/futures/thread.py:83);{ACTIVATE};"
    "BackorderLineWorkflow.run (workflows/line/workflow.py:143) 8",
    f"_worker (concurrent/futures/thread.py:83);{ACTIVATE} 10",
    f"{RUN} 25",
    "a line that is not a sample",
]


def test_each_stack_goes_to_its_first_step_and_the_start_is_left_out() -> None:
    found = budget(PROFILE)
    assert found.steps[STARTUP] == 100
    assert found.per_line == 100
    shares = dict(found.shares(found.steps, found.per_line))
    assert STARTUP not in shares
    assert shares == {
        "queueing": 0.20,
        "the shipment (plan, carrier, record)": 0.15,
        "messages (render, record, send)": 0.10,
        "workflow tasks": 0.30,
        OTHER: 0.25,
    }
    parts = dict(found.shares(found.workflow_parts, found.per_line))
    assert parts == {
        "decoding inputs and results (pydantic)": 0.12,
        "the workflow code": 0.08,
        SDK_ACTIVATION: 0.10,
    }


def test_the_report_turns_shares_into_the_worker_ms_per_line() -> None:
    text = report(budget(PROFILE), worker_ms=40.0)
    assert "   20.0 %     8.0 ms  queueing" in text
    assert "   30.0 %    12.0 ms  workflow tasks" in text
    assert "samples a line pays for: 100 (the worker's start: 100)" in text


def test_a_profile_of_only_the_start_says_so() -> None:
    assert "no samples outside the worker's start" in report(budget(PROFILE[:2]), worker_ms=None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "profile: no such file"),
        (["{profile}", "--worker-ms", "0"], "--worker-ms must be above 0"),
    ],
)
def test_the_command_refuses_what_it_cannot_use(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    profile = tmp_path / "worker.folded"
    profile.write_text("\n".join(PROFILE) + "\n")
    paths = {"profile": profile, "missing": tmp_path / "missing.folded"}
    command = [sys.executable, "-m", "bench.budget", *(a.format(**paths) for a in argv)]
    finished = subprocess.run(  # noqa: S603 - our own argv
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 2
    assert message in finished.stderr
