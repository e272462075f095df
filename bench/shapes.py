"""The server's CPU per workflow for the shapes a line takes on it, against the floor's.

    python -m bench.shapes [--count 400] [--rounds 3]

A Temporal dev server with the stack's storage flags, and a worker of its own (a process, the
SDK's defaults, a cache that holds every workflow) running workflows that do nothing but take a
shape on the server: the floor workflow, a happy-path line's events (two workflow tasks, five
local activities, two upserts, a ship-by timer the signal cancels), and that line with one
thing taken away or added. Each round starts `count` of each shape 50 at a time, signals them,
waits for them to finish, and charges the server's CPU (from /proc) over that to them
(docs/performance.md, "The survey in the store").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.floor import FloorWorkflow, noop
from bench.stack import free_port, say
from cli.stack import TEMPORAL_STORAGE_FLAGS, search_attribute_flags, temporal_binary
from config.loop import event_loop_factory
from domain import contract

TASK_QUEUE = "bench-shapes"
SHAPE_WORKFLOW = "BenchLineShape"
BIG_INPUT = "x" * 16_000
"""About what a line's input weighs."""


@dataclass(frozen=True)
class Shape:
    name: str
    what: str
    workflow: str
    options: tuple[str, ...] = ()
    big_start: bool = False


SHAPES = (
    Shape("floor", "the floor workflow (one activity, one signal, one 1 s timer)", "BenchFloor"),
    Shape(
        "line",
        "a happy-path line's events: 2 workflow tasks, 5 local activities, 2 upserts, "
        "a ship-by timer the signal cancels",
        SHAPE_WORKFLOW,
    ),
    Shape("no-upserts", "the same without its two upserts", SHAPE_WORKFLOW, ("no-upserts",)),
    Shape("no-timer", "the same without the timer", SHAPE_WORKFLOW, ("no-timer",)),
    Shape(
        "big-start",
        "the same with a 16 KB input and five search attributes at the start",
        SHAPE_WORKFLOW,
        big_start=True,
    ),
    Shape(
        "delayed-start",
        "the same whose last local activity starts a workflow delayed by three days",
        SHAPE_WORKFLOW,
        ("delayed-start",),
    ),
)

_client: Client | None = None
"""The worker process's client, for the activity that starts a delayed workflow."""


@activity.defn(name="bench_start_delayed")
async def start_delayed(workflow_id: str) -> None:
    assert _client is not None
    await _client.start_workflow(
        FloorWorkflow.run,
        id=f"delayed-{workflow_id}",
        task_queue=TASK_QUEUE,
        start_delay=timedelta(days=3),
    )


@workflow.defn(name=SHAPE_WORKFLOW)
class LineShapeWorkflow:
    def __init__(self) -> None:
        self._go = False

    @workflow.run
    async def run(self, options: list[str], _padding: str = "") -> None:
        timeout = timedelta(seconds=30)
        await workflow.execute_local_activity(noop, start_to_close_timeout=timeout)
        if "no-upserts" not in options:
            workflow.upsert_search_attributes([contract.SA_STATE.value_set("waiting")])
        await workflow.execute_local_activity(noop, start_to_close_timeout=timeout)
        deadline = None if "no-timer" in options else timedelta(days=2)
        await workflow.wait_condition(lambda: self._go, timeout=deadline)
        await workflow.execute_local_activity(noop, start_to_close_timeout=timeout)
        if "no-upserts" not in options:
            workflow.upsert_search_attributes(
                [
                    contract.SA_STATE.value_set("shipped"),
                    contract.SA_RECEIPT_ID.value_set("r-1"),
                ]
            )
        await workflow.execute_local_activity(noop, start_to_close_timeout=timeout)
        if "delayed-start" in options:
            await workflow.execute_local_activity(
                start_delayed, workflow.info().workflow_id, start_to_close_timeout=timeout
            )
        else:
            await workflow.execute_local_activity(noop, start_to_close_timeout=timeout)

    @workflow.signal(name="go")
    def go(self) -> None:
        self._go = True


async def run_worker(target: str) -> None:
    global _client
    _client = await Client.connect(target)
    worker = Worker(
        _client,
        task_queue=TASK_QUEUE,
        workflows=[FloorWorkflow, LineShapeWorkflow],
        activities=[noop, start_delayed],
        max_cached_workflows=10_000,
        # As the service's workers run (`BACKORDERS_WORKFLOW_SANDBOX` off by default).
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    await worker.run()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(client: Client, server_pid: int, shape: Shape, count: int) -> float:
    """Server CPU ms per workflow of `count` workflows of `shape`, started and driven."""
    tag = uuid.uuid4().hex[:6]
    ids = [f"{shape.name}-{tag}-{index}" for index in range(count)]
    extra = [
        SearchAttributePair(contract.SA_ORDER_ID, "o"),
        SearchAttributePair(contract.SA_SKU, "s"),
        SearchAttributePair(contract.SA_CHANNEL, "web"),
        SearchAttributePair(contract.SA_STATE, "received"),
        SearchAttributePair(contract.SA_CUSTOMER_TIER, "standard"),
    ]
    args: list[object] = [list(shape.options)] if shape.workflow == SHAPE_WORKFLOW else []
    if shape.big_start:
        args.append(BIG_INPUT)
    gate = asyncio.Semaphore(50)
    before = cpu_seconds(server_pid)

    async def start(workflow_id: str) -> None:
        async with gate:
            await client.start_workflow(
                shape.workflow,
                args=args,
                id=workflow_id,
                task_queue=TASK_QUEUE,
                search_attributes=TypedSearchAttributes(extra if shape.big_start else []),
            )

    async def signal(workflow_id: str) -> None:
        async with gate:
            await client.get_workflow_handle(workflow_id).signal("go")

    await asyncio.gather(*(start(workflow_id) for workflow_id in ids))
    await asyncio.gather(*(signal(workflow_id) for workflow_id in ids))
    for workflow_id in ids:
        await client.get_workflow_handle(workflow_id).result()
    return (cpu_seconds(server_pid) - before) * 1000 / count


async def measure(count: int, rounds: int) -> dict[str, list[float]]:
    port = free_port()
    target = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as folder:
        server = subprocess.Popen(  # noqa: S603, ASYNC220 - our own argv, no shell
            [
                temporal_binary(),
                *("server", "start-dev", "--headless", "--ip", "127.0.0.1"),
                *("--port", str(port), "--ui-port", str(free_port())),
                *("--db-filename", f"{folder}/temporal.db"),
                *TEMPORAL_STORAGE_FLAGS,
                *search_attribute_flags(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        worker = None
        try:
            client = None
            for _ in range(150):
                try:
                    client = await Client.connect(target)
                    break
                except RuntimeError:
                    await asyncio.sleep(0.2)
            if client is None:
                raise RuntimeError("the Temporal dev server did not answer")
            worker = subprocess.Popen(  # noqa: S603, ASYNC220 - our own argv, no shell
                [sys.executable, "-m", "bench.shapes", "--worker", target]
            )
            found: dict[str, list[float]] = {shape.name: [] for shape in SHAPES}
            for number in range(rounds):
                for shape in SHAPES:
                    spent = await one_round(client, server.pid, shape, count)
                    found[shape.name].append(spent)
                    say(f"round {number + 1}: {shape.name} {spent:.1f} ms of server CPU each")
            return found
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait()
            server.terminate()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__)
    parser.add_argument("--count", type=int, default=400, help="workflows per shape and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        if args.worker:
            runner.run(run_worker(args.worker))
            return
        found = runner.run(measure(args.count, args.rounds))
    table = Table(title=f"server CPU ms per workflow ({args.count} each, {args.rounds} rounds)")
    for column in ("shape", "rounds", "mean"):
        table.add_column(column)
    for shape in SHAPES:
        spent = found[shape.name]
        rounds = " / ".join(f"{value:.1f}" for value in spent)
        table.add_row(shape.what, rounds, f"{sum(spent) / len(spent):.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
