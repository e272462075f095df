"""What one HTTP request costs its client, httpx's own pool against aiohttp's under httpx's API
(`client/transport.py`): `python -m bench.http_client [--requests 3000] [--in-flight 1,10,50]`.

A bare ASGI app answers under uvicorn in a process of its own; the client's CPU
(`time.process_time`) is divided by the requests it sent, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.stack import free_port
from client.transport import async_client

BODY = {"order_id": "o-1", "line_id": "1", "sku": "SKU-1", "quantity": 1}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, answers a small JSON object, as the outside services do."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"id": "x-1", "status": "ok"}'})


async def cost(client: httpx.AsyncClient, requests: int, in_flight: int) -> float:
    """CPU ms per request, `in_flight` at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(index: int) -> None:
        async with gate:
            response = await client.post("/", json=BODY, headers={"Idempotency-Key": str(index)})
            response.raise_for_status()

    await asyncio.gather(*(one(index) for index in range(200)))
    began = time.process_time()
    await asyncio.gather(*(one(index) for index in range(requests)))
    return (time.process_time() - began) * 1000 / requests


async def compare(base: str, requests: int, count: int) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=base) as plain:
        before = await cost(plain, requests, count)
    async with async_client(base_url=base) as pooled:
        after = await cost(pooled, requests, count)
    return before, after


def main(requests: int, in_flight: list[int]) -> None:
    port = free_port()
    argv = ["-m", "uvicorn", "bench.http_client:app", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen([sys.executable, *argv, "--log-level", "warning"])  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        print("in flight | httpx's pool, CPU ms per request | aiohttp's pool, CPU ms per request")
        for count in in_flight:
            before, after = asyncio.run(compare(base, requests, count))
            print(f"{count} | {before:.3f} | {after:.3f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", default="1,10,50")
    args = parser.parse_args()
    counts = [int(value) for value in args.in_flight.split(",")]
    main(args.requests, counts)
