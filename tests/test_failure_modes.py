"""What callers get when a part is down (README: "Failure modes"): a 503 with Retry-After that
says which part, never a 500, and nothing half-written; /healthz names the part."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.stack import serve
from client.http import NO_RETRY, ApiClient
from config.settings import Settings
from domain.contract.lines import line_key
from store import records
from store.db import Database
from store.tables import SkuRow
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, backorder, new_id
from tests.support.stack import free_port, start_temporal


@dataclass
class Api:
    http: ApiClient
    db: Database


@pytest.fixture
async def temporal_gone(tmp_path: Path) -> AsyncIterator[Api]:
    """An API whose Temporal server has stopped (its client was connected while it ran)."""
    env = await start_temporal()
    client = env.client
    await env.shutdown()
    settings = Settings(
        state_dir=tmp_path,
        order_system_token=ORDER_TOKEN,
        ops_token=OPS_TOKEN,
        api_port=free_port(),
    )
    db = Database(settings.store_url)
    db.create_schema()
    server = await serve(create_app(settings, temporal=client, db=db), "127.0.0.1", free_port())
    port = server.server.config.port
    # No retries: the 503 itself is what is checked.
    async with ApiClient(f"http://127.0.0.1:{port}", retry=NO_RETRY) as http:
        yield Api(http, db)
    await server.stop()
    db.dispose()


async def test_a_start_while_temporal_is_down_is_a_503_and_writes_nothing(
    temporal_gone: Api,
) -> None:
    db = temporal_gone.db
    sku, order = new_id("sku"), new_id()
    with db.transaction() as session:
        session.add(SkuRow(sku=sku, name=f"Product {sku}"))
    response = await temporal_gone.http.post(
        "/v1/backorders",
        json=backorder(order, sku),
        headers={"Authorization": f"Bearer {ORDER_TOKEN}"},
    )
    health = await temporal_gone.http.get("/healthz")

    assert response.status_code == 503, response.text
    assert "Temporal is unavailable" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"
    assert records.line_request_hash(db, line_key(order, "1")) is None
    assert health.status_code == 503 and health.json()["temporal"].startswith("unavailable")
    assert health.json()["store"] == "ok"


async def test_a_read_while_the_store_is_down_is_a_503(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there: a PostgreSQL that is down
    settings = Settings(
        state_dir=tmp_path,
        database_url=f"postgresql://postgres@127.0.0.1:{port}/none",
        ops_token=OPS_TOKEN,
    )
    db = Database(settings.store_url)
    server = await serve(
        create_app(settings, temporal=temporal_env.client, db=db), "127.0.0.1", free_port()
    )
    base = f"http://127.0.0.1:{server.server.config.port}"
    async with ApiClient(base, retry=NO_RETRY) as http:
        listed = await http.get("/v1/backorders", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
        # The subject is the store; the shared Temporal dev server may be slow to answer the
        # health check's RPC while the rest of the suite loads it, so it is asked a few times.
        for _ in range(5):
            health = await http.get("/healthz")
            if health.json().get("temporal") == "ok":
                break
            await asyncio.sleep(1)
    await server.stop()
    db.dispose()

    assert listed.status_code == 503, listed.text
    assert "store is unavailable" in listed.json()["detail"]
    assert health.status_code == 503 and health.json()["store"].startswith("unavailable")
    assert health.json()["temporal"] == "ok"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_a_start_while_the_store_cannot_be_read_is_a_503_and_starts_nothing(
    temporal_env: WorkflowEnvironment, tmp_path: Path, store: str
) -> None:
    # SQLite is read on the API's event loop, PostgreSQL in a thread: both answer the same.
    if store == "sqlite":
        folder = tmp_path / "store"
        url = f"sqlite:///{folder / 'backorders.db'}"
    else:
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"  # nothing listens there
    settings = Settings(state_dir=tmp_path, database_url=url, order_system_token=ORDER_TOKEN)
    db = Database(settings.store_url)
    if store == "sqlite":
        folder.rmdir()  # the file cannot be opened: its folder is gone
    server = await serve(
        create_app(settings, temporal=temporal_env.client, db=db), "127.0.0.1", free_port()
    )
    order = new_id()
    base = f"http://127.0.0.1:{server.server.config.port}"
    async with ApiClient(base, retry=NO_RETRY) as http:
        response = await http.post(
            "/v1/backorders",
            json=backorder(order, new_id("sku")),
            headers={"Authorization": f"Bearer {ORDER_TOKEN}"},
        )
    await server.stop()
    db.dispose()

    assert response.status_code == 503, response.text
    assert "store is unavailable" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"
    with pytest.raises(RPCError, match="not found"):
        await temporal_env.client.get_workflow_handle(line_key(order, "1")).describe()
