"""The demo's first question to a stack, `GET /healthz`, over real HTTP to a stand-in that answers
as the API does: a stack that answers unhealthy is asked again for a while (a busy Temporal
server can miss one health check and answer the next), and one that stays unhealthy is named
part by part; nothing answering is told apart from both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from cli.demo import stack_answers, unhealthy_parts
from domain.responses import Health
from tests.support.cli import environment, run_cli
from tests.support.stack import free_port

UNHEALTHY = Health(status="unavailable", store="ok", temporal="unavailable: RPCError")
HEALTHY = Health(status="ok", store="ok", temporal="ok")


@dataclass
class StandIn:
    url: str
    asked: int = 0


@asynccontextmanager
async def health_answers(unhealthy_times: int) -> AsyncIterator[StandIn]:
    """A server whose /healthz answers 503 `unhealthy_times` times, then 200."""
    port = free_port()
    stand_in = StandIn(f"http://127.0.0.1:{port}")

    async def healthz(request: web.Request) -> web.Response:
        stand_in.asked += 1
        health = UNHEALTHY if stand_in.asked <= unhealthy_times else HEALTHY
        status = 200 if health.status == "ok" else 503
        return web.Response(
            status=status, text=health.model_dump_json(), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield stand_in
    finally:
        await runner.cleanup()


async def test_a_stack_that_misses_a_health_check_is_asked_again_and_found_healthy() -> None:
    async with health_answers(unhealthy_times=2) as stand_in:
        found = await stack_answers(stand_in.url, patience=10)
    assert found == HEALTHY
    assert stand_in.asked == 3


async def test_a_stack_that_stays_unhealthy_is_reported_with_the_part_not_answering() -> None:
    async with health_answers(unhealthy_times=1_000) as stand_in:
        found = await stack_answers(stand_in.url, patience=1.5)
    assert found == UNHEALTHY
    assert 2 <= stand_in.asked <= 4
    assert unhealthy_parts(UNHEALTHY) == "temporal: unavailable: RPCError"


async def test_nothing_answering_is_neither_healthy_nor_unhealthy() -> None:
    assert await stack_answers(f"http://127.0.0.1:{free_port()}", patience=1) is None


async def test_the_demo_refuses_a_stack_that_stays_unhealthy_naming_the_part() -> None:
    async with health_answers(unhealthy_times=1_000) as stand_in:
        run = await run_cli("demo", "--api", stand_in.url, env=environment(), within=60)
    assert run.code == 2, run.out + run.err
    assert "answers but is not healthy" in run.out
    assert "temporal: unavailable: RPCError" in run.out
    assert stand_in.asked >= 5
