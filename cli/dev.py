"""`backorders dev`: the whole embedded stack in the foreground, until Ctrl-C or SIGTERM.

The stack is the Temporal dev server (a child process on a SQLite file in the state folder), the
store, and on this event loop the simulators, the worker and the API. Everything it keeps lives in
the state folder, so starting it again on the same folder resumes every running workflow.
`backorders demo` starts the same `EmbeddedStack` when it finds no stack running.

One stack per state folder (`cli.state_folder`), and it dies whole: Ctrl-C, SIGTERM and a closed
terminal (SIGHUP) stop it in order; `kill -9` leaves the Temporal dev server to the kernel's
parent-death signal (`cli.processes.die_with_parent`), and whatever still survives is stopped by
the next start on the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import temporalio.activity
import temporalio.workflow
from sqlalchemy.engine import make_url

from cli.processes import ProcessIdentity, listening_on, open_by
from cli.stack import Services, TemporalDevServer, codec_url
from cli.state_folder import Claim, StateFolderInUseError, claim
from config import settings as defaults
from config.settings import Settings
from store.db import Database, open_store
from store.migrations import StoreSchemaError

log = logging.getLogger("backorders.cli")


class PortInUseError(Exception):
    """A port the stack needs is taken or unusable; the message names the setting to change."""


def stack_ports(settings: Settings) -> list[tuple[str, str, int]]:
    """(setting, host, port) of every port the embedded stack listens on."""
    ports = [
        ("BACKORDERS_API_PORT", settings.api_host, settings.api_port),
        ("BACKORDERS_TEMPORAL_PORT", "127.0.0.1", settings.temporal_port),
        ("BACKORDERS_UI_PORT", "127.0.0.1", settings.ui_port),
        ("BACKORDERS_SIMULATOR_PORT", "127.0.0.1", settings.simulator_port),
    ]
    if settings.codec_keys:
        ports.append(("BACKORDERS_CODEC_PORT", "127.0.0.1", settings.codec_port))
    bind = settings.sdk_metrics_bind
    if bind is not None:
        ports.append(("BACKORDERS_SDK_METRICS_ADDRESS", *bind))
    return ports


def _leftover_of_this_folder(settings: Settings, holder: ProcessIdentity) -> bool:
    """Whether `holder` is a Temporal dev server on this state folder's database."""
    return str(TemporalDevServer(settings).db_path) in holder.command.split()


def _port_taken(settings: Settings, setting: str, port: int) -> str:
    holders = listening_on(port)
    if not holders:
        return (
            f"port {port} is already in use ({setting}): stop what uses it, "
            f"or set {setting} to a free port"
        )
    holder = holders[0]
    if _leftover_of_this_folder(settings, holder):
        # Another port would start a second Temporal server on the same database file.
        return (
            f"port {port} ({setting}) is held by a Temporal dev server on this state folder "
            f"that an earlier stack left running ({holder.describe(60)}): stop it "
            f"(`kill {holder.pid}`) and start again"
        )
    return (
        f"port {port} is already in use ({setting}) by {holder.describe(60)}: stop it, "
        f"or set {setting} to a free port"
    )


def check_temporal_database(settings: Settings) -> None:
    """Refuse to start a Temporal server on a database file another process has open: a
    server an earlier stack left running (say, one started by a release without the state
    folder's record). Two servers on one file would each take the other's work."""
    db = TemporalDevServer(settings).db_path
    holders = open_by(db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    if holders:
        holder = holders[0]
        raise StateFolderInUseError(
            f"the Temporal database {db} is open in another process ({holder.describe(60)}), "
            f"left running by an earlier stack on this folder: stop it (`kill {holder.pid}`) "
            "and start again; a second Temporal server must not share the file"
        )


def check_ports(settings: Settings) -> None:
    """Refuse to start on a taken port, before anything starts.

    Checked up front because the parts fail late and unclearly otherwise: uvicorn exits the
    process, and a Temporal server already on the port would be silently connected to.
    The message names the process that holds the port when it can be found.
    """
    seen: dict[int, str] = {}
    for setting, host, port in stack_ports(settings):
        if port in seen:
            raise PortInUseError(
                f"{seen[port]} and {setting} are both {port}: give each its own port"
            )
        seen[port] = setting
        with socket.socket() as probe:
            # As the servers themselves do: a closed connection in TIME_WAIT must not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    message = _port_taken(settings, setting, port)
                else:
                    message = f"cannot listen on {host}:{port} ({setting}): {exc.strerror}"
                raise PortInUseError(message) from exc


class StackError(Exception):
    """The embedded stack failed to start (the message says which part and why)."""


@dataclass
class EmbeddedStack:
    """The running embedded stack; `stop` takes it down in the reverse order of `start`."""

    settings: Settings
    devserver: TemporalDevServer
    db: Database
    services: Services
    claim: Claim

    @classmethod
    async def start(cls, settings: Settings) -> EmbeddedStack:
        # The folder first: a second stack on it is refused before it looks at ports, and
        # what a dead stack left running is stopped before its ports are checked.
        try:
            folder = claim(settings.state_dir)
        except OSError as exc:
            raise StackError(
                f"the embedded stack did not start: cannot use the state folder "
                f"{settings.state_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            check_temporal_database(settings)
            check_ports(settings)
        except BaseException:
            folder.release()
            raise
        devserver = TemporalDevServer(
            settings, on_spawn=lambda pid: folder.record_child("Temporal dev server", pid)
        )
        db: Database | None = None
        try:
            client = await devserver.start()
            # The embedded stack owns its store: it migrates it (unless in production).
            db = open_store(settings, embedded=True)
            services = await Services.start(settings, client, db, codec=bool(settings.codec_keys))
        except BaseException as exc:
            # A half-started stack must not leave the dev server running behind us.
            if db is not None:
                db.dispose()
            devserver.stop()
            folder.release()
            if isinstance(exc, RuntimeError | OSError | StoreSchemaError):
                raise StackError(f"the embedded stack did not start: {exc}") from exc
            raise
        return cls(settings, devserver, db, services, folder)

    async def stop(self) -> None:
        # API first so nothing new comes in, then the worker (an activity it cuts short is
        # retried on the next start), then the simulators the activities call, Temporal last.
        try:
            await self.services.stop()
        finally:
            self.db.dispose()
            await asyncio.to_thread(self.devserver.stop)
            self.claim.release()


def display_host(host: str) -> str:
    """Where a local user reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def api_url(settings: Settings) -> str:
    return f"http://{display_host(settings.api_host)}:{settings.api_port}"


def ui_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.ui_port}"


def _token_shown(value: str, default: str, variable: str) -> str:
    """Dev defaults are public anyway; a token someone configured is never printed."""
    return value if value == default else f"${variable}"


def banner(settings: Settings) -> str:
    api = api_url(settings)
    store = make_url(settings.store_url).render_as_string(hide_password=True)
    ops = _token_shown(settings.ops_token, defaults.DEFAULT_OPS_TOKEN, "BACKORDERS_OPS_TOKEN")
    order = _token_shown(
        settings.order_system_token,
        defaults.DEFAULT_ORDER_SYSTEM_TOKEN,
        "BACKORDERS_ORDER_SYSTEM_TOKEN",
    )
    suppliers = _token_shown(
        settings.supplier_tokens, defaults.DEFAULT_SUPPLIER_TOKENS, "BACKORDERS_SUPPLIER_TOKENS"
    )
    # Operations may report receipts for any supplier, so its token serves when no
    # supplier token may be printed.
    supplier, supplier_token = next(iter(settings.supplier_token_map.items()), ("acme", ops))
    if suppliers != settings.supplier_tokens:
        supplier_token = ops
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    line = (
        '{"order_id": "1001", "line_id": "1", "sku": "mug", "quantity": 2, '
        '"unit_price": "12.50", "currency": "USD", "channel": "web", '
        f'"customer": {{"id": "c1", "email": "c1@example.com"}}, "ordered_at": "{now}"}}'
    )
    json_header = "-H 'Content-Type: application/json'"
    services = "{carrier,payments,notifications,storefront}"
    extra_lines = (
        [f"  Codec server   {codec_url(settings)}  (the UI decrypts payloads through it)"]
        if settings.codec_keys
        else []
    )
    if settings.sdk_metrics_address:
        extra_lines.append(
            f"  SDK metrics    http://{settings.sdk_metrics_address}/metrics  (the worker's)"
        )
    return "\n".join(
        [
            "backorders: the embedded stack is running (Ctrl-C stops it; its state is kept)",
            f"  API            {api}  (OpenAPI docs: {api}/docs)",
            f"  Temporal gRPC  {settings.temporal_target}  (namespace "
            f"{settings.temporal_namespace}, task queue {settings.task_queue})",
            f"  Temporal UI    {ui_url(settings)}",
            *extra_lines,
            f"  Metrics        {api}/metrics  (Prometheus, ops token) and {api}/v1/metrics",
            f"  Simulators     http://127.0.0.1:{settings.simulator_port}/{services}/requests",
            f"  State folder   {settings.state_dir.resolve()}",
            f"  Store          {store}",
            f"Tokens: ops {ops}; order system {order}; suppliers {suppliers}",
            "Try it:",
            f'  curl -X PUT {api}/v1/skus/mug -H "Authorization: Bearer {ops}" \\',
            f"""    {json_header} -d '{{"name": "Mug", "free_stock": 0}}'""",
            f'  curl -X POST {api}/v1/backorders -H "Authorization: Bearer {order}" \\',
            f"    {json_header} -d '{line}'",
            f"  curl -X POST {api}/v1/suppliers/{supplier}/receipts \\",
            f'    -H "Authorization: Bearer {supplier_token}" {json_header} \\',
            """    -d '{"receipt_id": "r1", "sku": "mug", "quantity": 2}'""",
            f'  curl {api}/v1/backorders/1001/1 -H "Authorization: Bearer {order}"',
            "  backorders demo    (in another terminal: a burst of 300 backordered lines)",
        ]
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a service manager's stop, and a closed terminal."""


@contextlib.contextmanager
def stop_requested() -> Iterator[asyncio.Event]:
    """An event set by SIGINT, SIGTERM or SIGHUP, so that each stops the stack in order.

    Without it SIGTERM or a closed terminal would end the process at once, leaving the
    stack's work cut short (the dev server itself dies with us either way).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def say(text: str) -> None:
    """Print, unless the terminal is gone (closed: writes fail with EIO); stopping matters
    more than telling."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


class ConciseFormatter(logging.Formatter):
    """One short line per record: an activity's or a workflow's log names its workflow id
    instead of the SDK's whole context dict."""

    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        source = record.name
        if isinstance(context, dict) and "workflow_id" in context:
            kind = context.get("activity_type") or context.get("workflow_type")
            source = f"{kind} [{context['workflow_id']}]"
        record.__dict__["source"] = source  # read by %(source)s
        return super().format(record)


def configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        ConciseFormatter("%(asctime)s %(levelname)-5s %(source)s: %(message)s", "%H:%M:%S")
    )
    logging.basicConfig(level=level, handlers=[handler])
    # The context goes on the record (for the formatter), not appended to every message.
    temporalio.activity.logger.activity_info_on_message = False
    temporalio.workflow.logger.workflow_info_on_message = False
    # httpx logs every request the activities make at INFO: noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def run_dev(settings: Settings) -> int:
    configure_logging(logging.INFO)
    with stop_requested() as stop:
        say(f"starting the embedded stack in {settings.state_dir.resolve()} ...")
        stack = await EmbeddedStack.start(settings)
        try:
            say(banner(settings))
            log.info("ready; worker polling task queue %r", settings.task_queue)
            await stop.wait()
            say("stopping: API, worker, simulators, Temporal ...")
        finally:
            await stack.stop()
    say(f"stopped; state kept in {settings.state_dir.resolve()}")
    return 0
