"""The fault-injecting TCP proxy of the network fault tests (`tests.support.proxy`), on loopback:
each fault does what the partition tests rely on it to do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.support.proxy import Connection, PgTransactionWatch, Proxy
from tests.support.stack import POSTGRES_ADMIN_URL, missing


@dataclass
class Echo:
    """A server that answers each chunk with the same bytes, and keeps what it received."""

    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> Echo:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    self.received.append(data)
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = await Echo().start()
    yield server
    assert server.server is not None
    server.server.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[Proxy]:
    running = await Proxy("echo", "127.0.0.1", echo.address).start()
    yield running
    await running.close()


async def ask(proxy: Proxy, data: bytes, within: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), within)
    finally:
        writer.close()


async def test_the_proxy_passes_bytes_both_ways_unchanged(proxy: Proxy, echo: Echo) -> None:
    payload = bytes(range(256)) * 1000
    assert await ask(proxy, payload) == payload
    assert b"".join(echo.received) == payload


async def test_the_proxy_delays_every_request_by_its_delay(proxy: Proxy) -> None:
    proxy.delay = 0.2
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    took = []
    for n in range(3):
        began = time.monotonic()
        writer.write(b"ping %d" % n)
        await writer.drain()
        assert await reader.readexactly(6) == b"ping %d" % n
        took.append(time.monotonic() - began)
    writer.close()
    assert all(0.2 <= t < 0.5 for t in took), took


async def test_the_proxy_resets_its_share_of_connections_before_or_after_the_request_arrived(
    proxy: Proxy, echo: Echo
) -> None:
    proxy.reset_rate = 0.2
    outcomes = []
    for n in range(20):
        try:
            outcomes.append(await ask(proxy, b"request %02d" % n) == b"request %02d" % n)
        except ConnectionResetError:
            # An RST: the read fails with ECONNRESET, never a clean end of stream.
            outcomes.append(False)
    assert outcomes.count(False) == proxy.stats.resets == 4
    # Half were cut before reaching the server, half after it had served them.
    assert len(echo.received) == 20 - 2


async def test_a_black_hole_answers_nothing_and_lifting_it_resets_what_lost_bytes(
    proxy: Proxy, echo: Echo
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.black_hole(True)
    writer.write(b"into the void")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    with pytest.raises(TimeoutError):
        await ask(proxy, b"a new connection", within=0.5)
    assert echo.received == []
    proxy.black_hole(False)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 2)
    writer.close()
    assert await ask(proxy, b"after") == b"after"


async def test_a_paused_proxy_holds_bytes_and_delivers_them_on_resume(
    proxy: Proxy, echo: Echo
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.pause()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    assert echo.received == []
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
    writer.close()


async def test_the_postgres_watch_fires_in_a_transaction_after_a_locking_statement() -> None:
    host_port = POSTGRES_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    seen: list[Connection] = []
    watch = PgTransactionWatch(seen.append, sql="FOR UPDATE")
    pg = await Proxy("postgres", "127.0.0.1", (host, int(port or 5432)), observer=watch).start()
    url = POSTGRES_ADMIN_URL.replace(host_port, f"127.0.0.1:{pg.port}")
    lock = "SELECT x FROM held FOR UPDATE"
    try:
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, sslmode="disable", connect_timeout=5
            )
        except psycopg.OperationalError as exc:
            missing("PostgreSQL", f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        async with conn:
            await conn.execute("CREATE TEMPORARY TABLE held (x int)")
            await conn.execute("INSERT INTO held VALUES (1)")
            watch.armed = True
            await conn.execute(lock)  # autocommit: no transaction block after it
            async with conn.transaction():
                await conn.execute("SELECT 1")  # inside one, but it locks nothing
                assert seen == []
                # Prepared: the SQL crosses once (Parse), later runs name it only (Bind).
                await conn.execute(lock, prepare=True)
                assert len(seen) == 1 and seen[0].upstream_port is not None
            assert not watch.armed, "it fires once per arming"
            watch.armed = True
            async with conn.transaction():
                await conn.execute(lock, prepare=True)
                assert len(seen) == 2
    finally:
        await pg.close()
