"""Connections for the service's httpx clients: aiohttp's pool under httpx's API.

httpx's own pool (httpcore) looks at every pooled connection for every request it sends; with
the 50-100 requests a worker or a load driver has in flight, that scan is most of what a
request costs (2.6-2.9 ms of CPU per request, against 0.46 ms through aiohttp's pool:
docs/performance.md). Callers keep httpx's API: its requests, responses, errors and timeouts.
Only the connections are aiohttp's (`httpx-aiohttp`), and its cookie jar is left out, so that
cookies stay httpx's alone, as before.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def async_client(
    *, limits: httpx.Limits = DEFAULT_LIMITS, verify: ssl.SSLContext | bool = True, **options: Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (`options` as httpx takes them) on aiohttp's connection pool."""
    context = httpx.create_ssl_context(verify=verify)

    def session() -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that sends the requests.
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    transport = AiohttpTransport(limits=limits, verify=context, client=session)
    return httpx.AsyncClient(transport=transport, **options)
