"""A TCP proxy that stands for the network between two parts, and misbehaves on demand.

The kernel here has no `netem` and there is no packet filter, so delay, resets and silent
losses are made in user space, per connection, by a proxy the test puts between a worker and a
service (`Proxy(name, listen_host, (upstream_host, upstream_port))`):

- `delay`: seconds each chunk from the client waits before it goes on: every request's answer
  comes that much later (the chunks keep their order; throughput is not limited);
- `reset_rate`: the share of new connections reset with a TCP RST (`SO_LINGER` 0, then close),
  spread evenly (at 0.2, every fifth connection, starting with the third), so that a test
  meets them however few connections it makes; in turn at once, and when the answer to the
  first request comes back, which is then dropped (the request was served, the caller never
  learns it);
- `black_hole(True)`: bytes go nowhere and nothing comes back, connections stay open and new
  ones are accepted and never answered (a peer gone without a word); lifting it resets every
  connection that lost bytes, as a peer that lost its state would;
- `pause()` / `resume()`: bytes are held, not lost, and flow again on resume (a partition that
  TCP retransmission rides out); the reading stops too, so the senders' TCP windows fill up.

An `observer` sees every chunk before it is forwarded and may pause the proxy at that very
chunk (see `PgTransactionWatch`, which follows PostgreSQL's wire protocol to cut a connection
mid-transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK = 65536
QUEUED_CHUNKS = 64
"""Chunks read ahead per direction before the reader waits (the delay line's length)."""


@dataclass(eq=False)
class Connection:
    """One client connection through the proxy."""

    id: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    upstream_port: int | None = None
    """The local port of the proxy's connection upstream: how the upstream sees this client."""
    awaiting_answer: bool = False
    """The client sent something and nothing came back since (a request in flight)."""
    lost_bytes: bool = False
    """Bytes of it went into a black hole: the stream is broken for good."""
    reset_at_answer: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


Observer = Callable[[Connection, bool, bytes], None]
"""(connection, from_client, chunk), called before the chunk is forwarded."""


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    delayed_chunks: int = 0
    black_holed_bytes: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST: linger on, for zero seconds, then close without flushing."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """`listen_host:port` (port chosen by the kernel) -> `upstream`; see the module's docstring."""

    def __init__(
        self,
        name: str,
        listen_host: str,
        upstream: tuple[str, int],
        *,
        observer: Observer | None = None,
    ) -> None:
        self.name = name
        self.listen_host = listen_host
        self.upstream = upstream
        self.delay = 0.0
        self.reset_rate = 0.0
        self.observer = observer
        self.stats = ProxyStats()
        self.connections: set[Connection] = set()
        self._reset_due = 0.5
        """Resets owed, in connections: one is made each time this reaches 1."""
        self._resets_made = 0
        self._ids = itertools.count(1)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._black_hole = False
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, self.listen_host, 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def awaiting_answers(self) -> int:
        """Connections with a request in flight."""
        return sum(1 for conn in self.connections if conn.awaiting_answer)

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def black_hole(self, on: bool) -> None:
        self._black_hole = on
        if not on:
            for conn in list(self.connections):
                if conn.lost_bytes:
                    self._reset(conn)

    async def close(self) -> None:
        """Stop listening and end every connection. Handlers end by themselves once their
        sockets are gone (cancelling them would be logged by asyncio's stream callback)."""
        if self._server is not None:
            self._server.close()
        self._black_hole = False
        self.resume()
        for conn in list(self.connections):
            self._abort(conn)
        handlers = list(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=5)
            for handler in stuck:
                handler.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # ---- one connection ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        conn = Connection(next(self._ids), writer)
        self.connections.add(conn)
        self.stats.connections += 1
        try:
            await self._relay(conn, reader)
        except OSError:
            # The upstream refused or is unreachable: the client sees its connection end.
            self._abort(conn)
        finally:
            self.connections.discard(conn)
            self._handlers.discard(handler)
            for task in conn.tasks:
                task.cancel()
            self._close(conn)

    async def _relay(self, conn: Connection, client_reader: asyncio.StreamReader) -> None:
        self._reset_due += self.reset_rate
        if self._reset_due >= 1:
            self._reset_due -= 1
            self._resets_made += 1
            if self._resets_made % 2:
                self._reset(conn)
                return
            conn.reset_at_answer = True
        if self._black_hole:
            conn.lost_bytes = True
            await self._swallow(conn, client_reader)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        conn.upstream = upstream_writer
        conn.upstream_port = upstream_writer.get_extra_info("sockname")[1]
        conn.tasks = [
            asyncio.create_task(self._pump(conn, client_reader, upstream_writer, from_client=True)),
            asyncio.create_task(self._pump(conn, upstream_reader, conn.client, from_client=False)),
        ]
        await asyncio.gather(*conn.tasks, return_exceptions=True)

    async def _swallow(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """A connection accepted into the black hole: read and drop until it goes away."""
        while data := await reader.read(CHUNK):
            self.stats.black_holed_bytes += len(data)

    async def _pump(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        """One direction: a reader filling a bounded delay line, a writer emptying it."""
        line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUED_CHUNKS)
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    await line.put(None)
                    return
                if self._black_hole:
                    conn.lost_bytes = True
                    self.stats.black_holed_bytes += len(data)
                    continue
                if self.observer is not None:
                    self.observer(conn, from_client, data)
                delay = self.delay if from_client else 0.0
                if delay:
                    self.stats.delayed_chunks += 1
                conn.awaiting_answer = from_client
                await line.put((loop.time() + delay, data))

        async def write() -> None:
            while (item := await line.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                await self._flowing.wait()
                if not from_client and conn.reset_at_answer:
                    self._reset(conn)
                    return
                writer.write(data)
                await writer.drain()
                if from_client:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
            # The sender closed its side: pass the end on, keep the other direction going.
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()

        halves = {asyncio.create_task(read()), asyncio.create_task(write())}
        try:
            done, _ = await asyncio.wait(halves, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for half in halves:
                half.cancel()
            await asyncio.gather(*halves, return_exceptions=True)
        if any(not half.cancelled() and half.exception() is not None for half in done):
            # One side broke the connection: so does the proxy, to the other side.
            self._abort(conn)

    def _reset(self, conn: Connection) -> None:
        self.stats.resets += 1
        reset(conn.client)
        if conn.upstream is not None:
            conn.upstream.transport.abort()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()

    def _abort(self, conn: Connection) -> None:
        conn.client.transport.abort()
        if conn.upstream is not None:
            conn.upstream.transport.abort()

    def _close(self, conn: Connection) -> None:
        conn.client.close()
        if conn.upstream is not None:
            conn.upstream.close()


@dataclass
class _PgSession:
    """What a watch knows of one connection's PostgreSQL session."""

    server: bytearray = field(default_factory=bytearray)
    client: bytearray = field(default_factory=bytearray)
    client_untyped: bool = True
    """The client's next message has no type byte (a startup message or an SSL/GSS request)."""
    one_byte_answers: int = 0
    """Single-byte answers the server owes (to SSL/GSS encryption requests)."""
    prepared: dict[bytes, bytes] = field(default_factory=dict)
    """Prepared statement name -> its SQL."""
    matched: bool = False
    """A statement of the open transaction contains the SQL looked for."""
    unanswered: int = 0
    """Syncs and simple queries the client sent that the server has not answered (its
    ReadyForQuery): more than none when the client pipelines."""
    since_sync: bool = False
    """The client sent a whole message after its last Sync or simple query (a pipeline's next
    one; a message the server has only in part does not keep it from its idle timeout)."""

    @property
    def pipelined(self) -> bool:
        """The server has more from the client to answer than the ReadyForQuery just read."""
        return self.unanswered > 0 or self.since_sync


class PgTransactionWatch:
    """An observer that follows PostgreSQL's wire protocol through a `Proxy` and calls
    `on_transaction(connection)` when, while armed, a session is inside a transaction block
    (the server's ReadyForQuery says 'T') after a statement containing `sql` (say, `FOR UPDATE`:
    the session holds row locks); any statement after BEGIN when `sql` is empty. It fires once
    per arming, on the very chunk that tells the client, so the observer can hold it there.

    It fires only when that ReadyForQuery answers everything the client sent: a pipelining
    client may already have sent its next messages, and a session with messages past its last
    Sync is not idle to PostgreSQL, so `idle_in_transaction_session_timeout` never ends it
    (docs/operations.md, "The store").

    Messages are a type byte and a 4-byte length, except a client's first (startup, SSL and GSS
    encryption requests) and the server's one-byte answers to the encryption requests. The
    client's statements come as simple queries ('Q') or as Parse ('P', SQL under a name) and
    Bind ('B', a prepared name). Use `sslmode=disable`: an encrypted stream cannot be read."""

    _ENCRYPTION_REQUESTS = (80877103, 80877104)

    def __init__(self, on_transaction: Callable[[Connection], None], sql: str = "") -> None:
        self.on_transaction = on_transaction
        self.sql = sql.encode()
        self.armed = False
        self._sessions: dict[int, _PgSession] = {}

    def __call__(self, conn: Connection, from_client: bool, data: bytes) -> None:
        session = self._sessions.setdefault(conn.id, _PgSession())
        if from_client:
            session.client += data
            self._read_client(session)
        else:
            session.server += data
            self._read_server(conn, session)

    def _read_client(self, session: _PgSession) -> None:
        buffer = session.client
        while True:
            if session.client_untyped:
                if len(buffer) < 8:
                    return
                length = int.from_bytes(buffer[:4], "big")
                if len(buffer) < length:
                    return
                code = int.from_bytes(buffer[4:8], "big")
                if code in self._ENCRYPTION_REQUESTS:
                    session.one_byte_answers += 1
                else:
                    session.client_untyped = False
                del buffer[:length]
                continue
            if len(buffer) < 5:
                return
            kind, length = buffer[0], int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 1 + length:
                return
            body = bytes(buffer[5 : 1 + length])
            del buffer[: 1 + length]
            statement = b""
            if kind == ord("Q"):
                statement = body.split(b"\0", 1)[0]
            elif kind == ord("P"):
                name, query = body.split(b"\0", 2)[:2]
                session.prepared[name] = query
                statement = query
            elif kind == ord("B"):
                name = body.split(b"\0", 2)[1]
                statement = session.prepared.get(name, b"")
            if kind in (ord("S"), ord("Q")):
                session.unanswered += 1
                session.since_sync = False
            else:
                session.since_sync = True
            begins = statement.strip().upper().startswith(b"BEGIN")
            if statement and not begins and self.sql.upper() in statement.upper():
                session.matched = True

    def _read_server(self, conn: Connection, session: _PgSession) -> None:
        buffer = session.server
        while buffer:
            if session.one_byte_answers:
                session.one_byte_answers -= 1
                del buffer[:1]
                continue
            if len(buffer) < 5:
                return
            kind, length = buffer[0], int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 1 + length:
                return
            if kind == ord("Z") and length == 5:
                session.unanswered = max(0, session.unanswered - 1)
                status = buffer[5]
                if status != ord("T"):
                    session.matched = False
                elif session.matched and self.armed and not session.pipelined:
                    self.armed = False
                    self.on_transaction(conn)
            del buffer[: 1 + length]
