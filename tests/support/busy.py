"""A front for the API, on loopback, that answers 503 "asking again is safe" with Retry-After to
the first requests of chosen routes, as the API does while Temporal restarts or a line's worker
is busy, and passes everything else through to the real API.

A rule can hold the request back (the 503 comes before anything was done), or pass it through
and lose the answer (the API did it, the caller is told 503): the second is what a cancel that
took effect looks like when its answer timed out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request, Response

from cli.stack import serve
from tests.support.stack import free_port


@dataclass
class Rule:
    method: str
    path: str
    """A regular expression the whole path matches."""
    times: int = 1
    """How many requests of each path get a 503 before one goes through."""
    after: bool = False
    """Pass the request through, then answer 503 in place of the API's answer."""


@dataclass
class Busy:
    url: str
    rules: list[Rule]
    refused: Counter[str] = field(default_factory=Counter)
    """503s given, by `METHOD path`."""

    def rule_for(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.method == method and re.fullmatch(rule.path, path):
                return rule
        return None


@asynccontextmanager
async def busy_front(api_url: str, *rules: Rule) -> AsyncIterator[Busy]:
    """A front for the API at `api_url` playing `rules`; its own URL is `.url`."""
    port = free_port()
    busy = Busy(f"http://127.0.0.1:{port}", list(rules))
    app = FastAPI()

    async with httpx.AsyncClient(base_url=api_url, timeout=60) as upstream:

        @app.api_route(
            "/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
        )
        async def front(path: str, request: Request) -> Response:
            method, full = request.method, "/" + path
            rule = busy.rule_for(method, full)
            name = f"{method} {full}"
            refuse = rule is not None and busy.refused[name] < rule.times
            if refuse and rule is not None and not rule.after:
                busy.refused[name] += 1
                return _unavailable()
            headers = {
                key: value
                for key, value in request.headers.items()
                if key.lower() in ("authorization", "content-type", "idempotency-key")
            }
            answer = await upstream.request(
                method, full, params=request.query_params, content=await request.body(),
                headers=headers,
            )  # fmt: skip
            if refuse:
                busy.refused[name] += 1
                return _unavailable()
            return Response(
                answer.content,
                status_code=answer.status_code,
                media_type=answer.headers.get("content-type"),
            )

        server = await serve(app, "127.0.0.1", port)
        try:
            yield busy
        finally:
            await server.stop()


def _unavailable() -> Response:
    return Response(
        b'{"detail": "Temporal is unavailable; asking again is safe"}',
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": "1"},
    )
