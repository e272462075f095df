"""The floor: the least a workflow can ask of the server, to compare a backordered line with.

One activity that does nothing, one signal, one one-second timer (MEASUREMENTS.md measured the
dev server's throughput with the same workflow). Its worker runs in a process of its own, with
the SDK's defaults, on the event loop the service's worker runs on (`config.loop`):
`python -m bench.floor TASK_QUEUE`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from config.loop import event_loop_factory

FLOOR_WORKFLOW = "BenchFloor"
FLOOR_SIGNAL = "go"


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    def __init__(self) -> None:
        self._go = False

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self._go)
        await asyncio.sleep(1)

    @workflow.signal(name=FLOOR_SIGNAL)
    def go(self) -> None:
        self._go = True


async def run_worker(target: str, task_queue: str) -> None:
    client = await Client.connect(target)
    worker = Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[noop])
    await worker.run()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(run_worker(sys.argv[1], sys.argv[2]))
