"""A stack whose workers each run on a host of their own, reached through links that can fail.

The host side runs on loopback, in the test's process unless said otherwise: a Temporal dev
server (`cli.stack.TemporalDevServer`, its own file and ports), a private PostgreSQL
(`tests.support.postgres`, a child process, so that a test may restart it), the simulators of
the outside services and the API. Each worker is `python -m worker.main` in a network namespace
of its own (`tests.support.netns`) with three links to the host side:

    worker wN (namespace)                          host side (loopback services)
      to-temporal 198.18.x.2 ==veth== 198.18.x.1  proxy -> 127.0.0.1:<temporal port>
      to-store    198.18.y.2 ==veth== 198.18.y.1  proxy -> 127.0.0.1:<postgres port>
      to-services 198.18.z.2 ==veth== 198.18.z.1  proxy -> 127.0.0.1:<simulators port>

so that one worker can be cut off from one part (`host.links["store"].cut()`), or see its
traffic to one part delayed, reset or black-holed (`host.proxies["services"]`), while the
others run on. The API stays on the host side, as order systems reach it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from temporalio.client import Client

from api.app import create_app
from cli.processes import die_with_parent
from cli.stack import RunningServer, TemporalDevServer, serve
from config.settings import Settings
from simulators.app import create_app as create_simulators
from store.db import Database
from tests.support import netns, postgres
from tests.support.chaos import PROJECT_ROOT, WorkerProcess, worker_environment
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, SUPPLIER_TOKENS
from tests.support.netns import Lab, Link, Namespace
from tests.support.postgres import PrivatePostgres
from tests.support.proxy import PgTransactionWatch, Proxy
from tests.support.stack import free_port, missing

PARTS = ("temporal", "store", "services")
HTTP_TIMEOUT_SECONDS = 3.0
"""The workers' timeout for outside calls: a call into a cut link costs 3 s, not 10."""


def require_namespaces_and_postgres() -> None:
    """Fail in CI, skip elsewhere (saying why), when this machine cannot run these tests."""
    reason = netns.unavailable() or postgres.unavailable()
    if reason is not None:
        missing("root, iproute2 and the PostgreSQL server programs", reason)


@dataclass
class NamespacedWorker(WorkerProcess):
    """`python -m worker.main` inside a network namespace; it dies with the test process."""

    namespace: Namespace | None = None

    def start(self) -> None:
        assert self.namespace is not None, "no namespace"
        assert self.process is None or self.process.poll() is not None, "already running"
        self.logs.append(self.log_dir / f"worker-{len(self.logs) + 1}.log")
        with self.logs[-1].open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                self.namespace.command(sys.executable, "-m", "worker.main"),
                cwd=PROJECT_ROOT,
                env=worker_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )


@dataclass
class WorkerHost:
    """One worker's host: its namespace, its links to the host side, the proxies on their
    host ends, and the worker inside."""

    name: str
    namespace: Namespace
    proxies: dict[str, Proxy]
    worker: NamespacedWorker
    store_watch: PgTransactionWatch
    """On the store proxy: armed, it tells when a session of this worker is in a transaction
    holding row locks (after a `SELECT ... FOR UPDATE`, as every stock change takes its SKU's)."""

    @property
    def links(self) -> dict[str, Link]:
        return self.namespace.links

    @property
    def identity_prefix(self) -> str:
        """How Temporal names this worker in a history (the SDK's default: `pid@host`)."""
        return f"{self.worker.pid}@"


@dataclass
class Cluster:
    settings: Settings
    """The host side's settings (loopback addresses)."""
    postgres: PrivatePostgres
    devserver: TemporalDevServer
    client: Client
    db: Database
    """The store, as the API on the host side reaches it."""
    simulators: RunningServer
    api_server: RunningServer
    api: httpx.AsyncClient
    hosts: list[WorkerHost]

    @property
    def simulators_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.simulator_port}"

    def logs(self) -> str:
        """Every worker's log and the end of the servers', for a failure message."""
        parts = [f"==== {host.name}\n{host.worker.log_tail()}" for host in self.hosts]
        for name, path in (
            ("temporal.log", self.devserver.log_path),
            ("postgres", self.postgres.log),
        ):
            tail = path.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"---- {name} (last 20 lines)\n" + "\n".join(tail))
        return "\n".join(parts)


def _worker_settings(base: Settings, proxies: dict[str, Proxy], database: str) -> Settings:
    """A worker's settings: every part reached through its own links' proxies. The store
    without TLS, so that a proxy can follow PostgreSQL's protocol (`PgTransactionWatch`)."""
    services = f"http://{proxies['services'].address}"
    store = proxies["store"].address
    return base.model_copy(
        update={
            "temporal_address": proxies["temporal"].address,
            "database_url": f"postgresql://postgres@{store}/{database}"
            "?sslmode=disable&gssencmode=disable",
            "carrier_url": f"{services}/carrier",
            "payments_url": f"{services}/payments",
            "notifications_url": f"{services}/notifications",
            "storefront_url": f"{services}/storefront",
        }
    )


def _kill_workers(hosts: list[WorkerHost]) -> None:
    for host in hosts:
        process = host.worker.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@asynccontextmanager
async def running_cluster(
    folder: Path, *, workers: int = 3, database_settings: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    """The stack of the module's docstring, taken down whole on the way out, a failure
    included: workers, proxies, namespaces and links, servers, PostgreSQL.
    `database_settings`: PostgreSQL settings of the store's database (`ALTER DATABASE ... SET`),
    in force for every session, the workers' included."""
    require_namespaces_and_postgres()
    async with AsyncExitStack() as cleanup:
        pg = PrivatePostgres.create()
        cleanup.callback(pg.remove)
        pg.start()
        database = f"backorders_{uuid.uuid4().hex[:8]}"
        url = pg.create_database(database)
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            for name, value in (database_settings or {}).items():
                admin.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(database), sql.Identifier(name), sql.Literal(value)
                    )
                )
        settings = Settings(
            state_dir=folder,
            database_url=url,
            task_queue=f"faults-{uuid.uuid4().hex[:8]}",
            temporal_port=free_port(),
            ui_port=free_port(),
            api_port=free_port(),
            simulator_port=free_port(),
            sdk_metrics_address="",
            http_timeout_seconds=HTTP_TIMEOUT_SECONDS,
            order_system_token=ORDER_TOKEN,
            ops_token=OPS_TOKEN,
            supplier_tokens=",".join(f"{s}={t}" for s, t in SUPPLIER_TOKENS.items()),
        )
        db = Database(settings.store_url)
        cleanup.callback(db.dispose)
        # As `backorders migrate` does before any API or worker starts on PostgreSQL.
        db.create_schema()
        devserver = TemporalDevServer(settings)
        cleanup.push_async_callback(asyncio.to_thread, devserver.stop)
        client = await devserver.start()
        simulators = await serve(create_simulators(folder), "127.0.0.1", settings.simulator_port)
        cleanup.push_async_callback(simulators.stop)
        api_server = await serve(
            create_app(settings, temporal=client, db=db), "127.0.0.1", settings.api_port
        )
        cleanup.push_async_callback(api_server.stop)
        api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=60)
        cleanup.push_async_callback(api.aclose)

        lab = cleanup.enter_context(Lab())
        upstreams = {
            "temporal": ("127.0.0.1", settings.temporal_port),
            "store": ("127.0.0.1", pg.port),
            "services": ("127.0.0.1", settings.simulator_port),
        }
        hosts = []
        for n in range(1, workers + 1):
            name = f"w{n}"
            namespace = lab.namespace(name)
            proxies = {}
            # Following the store's protocol from the first byte: a test may arm it any time.
            watch = PgTransactionWatch(lambda _: None, sql="FOR UPDATE")
            for part in PARTS:
                link = lab.link(namespace, part)
                proxy = Proxy(
                    f"{name}-{part}",
                    link.host_address,
                    upstreams[part],
                    observer=watch if part == "store" else None,
                )
                proxies[part] = await proxy.start()
                cleanup.push_async_callback(proxy.close)
            log_dir = folder / name
            log_dir.mkdir()
            worker = NamespacedWorker(
                _worker_settings(settings, proxies, database), log_dir, namespace=namespace
            )
            hosts.append(WorkerHost(name, namespace, proxies, worker, watch))
        # First of the cleanups (they run last registered first): the workers go before their
        # proxies and namespaces. Killed: the whole stack goes with them, nothing to finish.
        cleanup.push_async_callback(asyncio.to_thread, _kill_workers, hosts)
        for host in hosts:
            host.worker.start()
        await asyncio.gather(*(host.worker.wait_ready(90) for host in hosts))
        yield Cluster(settings, pg, devserver, client, db, simulators, api_server, api, hosts)
