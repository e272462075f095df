"""The stack a benchmark runs on: the Temporal dev server, the worker, the API, the simulators
and the floor's worker, each a process of its own as in production, with state in a temporary
folder."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import TextClause, text
from temporalio.client import Client

from cli.stack import TemporalDevServer
from client.http import ApiClient
from config.settings import Settings
from store.db import Database

FLOOR_QUEUE = "bench-floor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


async def until(
    what: str, done: Callable[[], Awaitable[tuple[bool, str]]], *, within: float
) -> float:
    """Poll `done` every 0.2 s until it says True; returns the time.monotonic() it did. Prints
    progress every 10 s, and fails naming `what` after `within` seconds."""
    start = last = time.monotonic()
    while True:
        finished, progress = await done()
        now = time.monotonic()
        if finished:
            return now
        if now - start > within:
            raise TimeoutError(f"{what}: not done after {within:.0f} s ({progress})")
        if now - last >= 10:
            say(f"  {what}: {progress}")
            last = now
        await asyncio.sleep(0.2)


@dataclass
class BenchStack:
    root: Path
    settings: Settings
    server: TemporalDevServer
    client: Client
    db: Database
    api: ApiClient
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    cpu_at_end: dict[str, float] | None = None
    """Set by a scenario whose measured work ended before its analysis (`end_of_work`)."""

    @classmethod
    async def start(cls, root: Path, database_url: str | None, workers: int = 1) -> BenchStack:
        """The stack, with `workers` worker processes (`worker`, `worker-2`, ...)."""
        settings = Settings(
            state_dir=root,
            temporal_port=free_port(),
            ui_port=free_port(),
            api_port=free_port(),
            simulator_port=free_port(),
            codec_port=free_port(),
            database_url=database_url,
            sdk_metrics_address="",
        )
        server = TemporalDevServer(settings)
        client = await server.start()
        db = Database(settings.store_url)
        api = ApiClient(f"http://127.0.0.1:{settings.api_port}", timeout=60)
        stack = cls(root, settings, server, client, db, api)
        for number in range(1, workers + 1):
            stack.spawn("worker" if number == 1 else f"worker-{number}", "-m", "worker.main")
        stack.spawn("api", "-m", "api.app")
        stack.spawn("simulators", "-m", "cli.main", "simulators")
        stack.spawn("floor", "-m", "bench.floor", settings.temporal_target, FLOOR_QUEUE)
        await until("the API to answer", stack._api_answers, within=60)
        await until("the simulators to answer", stack._simulators_answer, within=60)
        await until("the store to exist", stack._store_exists, within=60)
        return stack

    def environment(self) -> dict[str, str]:
        values = {
            "BACKORDERS_STATE_DIR": str(self.root),
            "BACKORDERS_TEMPORAL_PORT": str(self.settings.temporal_port),
            "BACKORDERS_API_PORT": str(self.settings.api_port),
            "BACKORDERS_SIMULATOR_PORT": str(self.settings.simulator_port),
            "BACKORDERS_SDK_METRICS_ADDRESS": "",
        }
        if self.settings.database_url:
            values["BACKORDERS_DATABASE_URL"] = self.settings.database_url
        environment = os.environ | values
        # The worker's sandbox imports the workflow modules afresh for every workflow run: with
        # no bytecode cache each of those imports compiles the source again (about a third of
        # the worker's time in a surge). Production images compile at install.
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        return environment

    def spawn(self, name: str, *argv: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [sys.executable, *argv], env=self.environment(), stdout=log, stderr=subprocess.STDOUT
        )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the {name} process exited ({process.returncode}):\n{tail}")

    async def _api_answers(self) -> tuple[bool, str]:
        self.check_alive()
        try:
            response = await self.api.get("/healthz")
        except httpx.HTTPError as exc:
            return False, repr(exc)
        return response.status_code == 200, f"/healthz {response.status_code}"

    async def _simulators_answer(self) -> tuple[bool, str]:
        self.check_alive()
        url = f"http://127.0.0.1:{self.settings.simulator_port}/notifications/requests"
        try:
            response = await self.api.http.get(url)
        except httpx.HTTPError as exc:
            return False, repr(exc)
        return response.status_code < 500, f"simulators {response.status_code}"

    async def _store_exists(self) -> tuple[bool, str]:
        try:
            await self.count("SELECT count(*) FROM lines")
        except Exception as exc:
            return False, type(exc).__name__
        return True, "ok"

    async def count(self, query: str | TextClause, **params: object) -> int:
        """One number from the store (read-only)."""
        statement = text(query) if isinstance(query, str) else query

        def read() -> int:
            with self.db.reading() as session:
                return int(session.connection().execute(statement, params).scalar_one())

        return await asyncio.to_thread(read)

    async def running(self, task_queue: str) -> int:
        """Workflows still running on a task queue (Temporal's visibility store)."""
        found = await self.client.count_workflows(
            f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"'
        )
        return found.count

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process of the stack has used so far (Linux /proc)."""
        pids = {name: process.pid for name, process in self.processes.items()}
        if self.server.process is not None:
            pids["temporal"] = self.server.process.pid
        pids["bench"] = os.getpid()
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for name, pid in pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            found[name] = (int(fields[11]) + int(fields[12])) / ticks
        return found

    async def until_quiet(self, what: str, *, within: float = 120.0) -> float:
        """Until every process of the stack but the bench has spent less than a tenth of a
        core over half a second: what earlier work left (messages, timers, the worker's
        catching up) is done, so that the next measurement does not pay for it."""
        before, since = self.cpu_seconds(), time.monotonic()

        async def done() -> tuple[bool, str]:
            nonlocal before, since
            await asyncio.sleep(0.5)
            now, at = self.cpu_seconds(), time.monotonic()
            # Over the time since the last look: `until` sleeps between looks too.
            busy = sum(now[name] - before[name] for name in now if name != "bench") / (at - since)
            before, since = now, at
            return busy < 0.1, f"{busy:.0%} of a core busy"

        return await until(what, done, within=within)

    def end_of_work(self) -> None:
        """The measured work is done: what the scenario does next (reading histories, say) is
        not charged to it (`bench.__main__.costed`)."""
        self.cpu_at_end = self.cpu_seconds()

    def rss(self, name: str) -> tuple[int, int]:
        """(resident, peak resident) bytes of one process, from /proc (Linux)."""
        process = self.processes[name]
        fields = {}
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return _kib(fields["VmRSS"]), _kib(fields["VmHWM"])

    async def stop(self) -> None:
        await self.api.aclose()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.db.dispose()
        self.server.stop()


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024
