"""Faults of the network between the parts (README: "Failure modes").

Three workers, each on a host of its own (a network namespace with links to the host side for
Temporal, the store and the outside services; `tests.support.cluster`), run a surge of lines
sent through the API while one fault strikes: a worker cut off from Temporal past the workflow
task timeout, from the store in the middle of a transaction, from the outside services while
every service link resets a fifth of its connections and delays the rest, and PostgreSQL itself
restarted. Each ends with every line shipped or cancelled as asked, every effect exactly once in
the simulators' records, and the store audit clean (`tests.support.surge.assert_exactly_once`).

Links are cut by setting the host end of a worker's veth down: packets vanish both ways, as when
a host's link fails (established connections stall, new ones fail after about 3 s with "No route
to host"), and TCP carries on where it can once the link is up again. Delays and resets come
from the proxy on each link's host end.

Needs root, iproute2 and the PostgreSQL server programs (the store is a PostgreSQL of the
test's own, so that one test can restart it): in CI a missing part fails the tests, on a
developer's machine they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.factories import backorder, new_id
from tests.support.proxy import Connection, Proxy
from tests.support.surge import (
    ORDER,
    Surge,
    mid_surge,
    play,
    timed_out_tasks,
)

CUT_SECONDS = 15.0
"""How long a link stays cut: longer than the workflow task timeout (10 s)."""
STORE_DOWN_SECONDS = 10.0
IDLE_IN_TRANSACTION_TIMEOUT = "5s"
"""What the store test's PostgreSQL allows a session to sit in an open transaction: how long a
cut-off worker's locks outlive the cut (README: Failure modes)."""


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as running:
        yield running


async def in_flight(proxy: Proxy, within: float = 10.0) -> bool:
    """Until a request through `proxy` waits for its answer (True), or `within` seconds have
    passed without one (False: the fault strikes all the same)."""
    deadline = time.monotonic() + within
    while proxy.awaiting_answers == 0:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


def traffic(cluster: Cluster) -> dict[str, dict[str, int]]:
    """Per worker and link: bytes carried both ways, for the report."""
    return {
        host.name: {
            part: proxy.stats.bytes_up + proxy.stats.bytes_down
            for part, proxy in host.proxies.items()
        }
        for host in cluster.hosts
    }


async def test_three_workers_on_hosts_of_their_own_end_every_line_exactly_once(
    cluster: Cluster,
) -> None:
    surge = Surge.build(seed=11)
    fault = asyncio.Event()
    report: dict[str, Any] = {}

    async def no_fault() -> None:
        report["fault at"] = time.monotonic()
        fault.set()

    await play(cluster, surge, fault, no_fault(), report)
    # Each worker did its share, through its own links only.
    for host in cluster.hosts:
        for part, proxy in host.proxies.items():
            assert proxy.stats.bytes_up > 0 and proxy.stats.bytes_down > 0, (host.name, part)
    report["bytes per link"] = traffic(cluster)
    print(f"\nthree workers, no fault: {report}")


async def test_a_worker_cut_off_from_temporal_past_the_task_timeout_loses_and_doubles_nothing(
    cluster: Cluster,
) -> None:
    surge = Surge.build(seed=12)
    fault = asyncio.Event()
    report: dict[str, Any] = {}
    cut_off = cluster.hosts[0]

    async def partition() -> None:
        await mid_surge(cluster)
        # While it makes a call: its result cannot be reported, the task it belongs to times
        # out, and another worker must redo it without a second effect.
        report["cut during a call"] = await in_flight(cut_off.proxies["services"])
        cut_off.links["temporal"].cut()
        report["fault at"] = time.monotonic()
        fault.set()
        await asyncio.sleep(CUT_SECONDS)
        cut_off.links["temporal"].heal()

    await play(cluster, surge, fault, partition(), report)
    timed_out = await timed_out_tasks(cluster, surge)
    report["workflow tasks timed out"] = dict(timed_out)
    assert sum(timed_out.values()) > 0, "no task met the cut"
    print(f"\n{cut_off.name} cut off from Temporal for {CUT_SECONDS} s: {report}")


SESSION = (
    "SELECT pid, state, left(query, 100), backend_xid IS NOT NULL FROM pg_stat_activity WHERE "
)


async def session_of(
    admin: psycopg.AsyncConnection[Any], *, port: int | None = None, pid: int | None = None
) -> dict[str, Any] | None:
    """A PostgreSQL session: the one behind a connection held in a proxy (by its client port),
    or the one with a given pid."""
    if port is not None:
        cursor = await admin.execute(SESSION + "client_port = %s", (port,))
    else:
        cursor = await admin.execute(SESSION + "pid = %s", (pid,))
    row = await cursor.fetchone()
    if row is None:
        return None
    return dict(zip(("pid", "state", "last statement", "holds row locks"), row, strict=True))


async def test_a_worker_cut_off_from_the_store_mid_transaction_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    settings = {"idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT}
    async with running_cluster(tmp_path, database_settings=settings) as cluster:
        surge = Surge.build(seed=13)
        fault = asyncio.Event()
        report: dict[str, Any] = {}
        cut_off = cluster.hosts[0]
        store = cut_off.proxies["store"]
        caught: asyncio.Queue[Connection] = asyncio.Queue()

        def cut_here(conn: Connection) -> None:
            # At the very chunk that tells the worker its transaction is open: nothing more
            # passes either way, and the link goes down right after.
            store.pause()
            caught.put_nowait(conn)

        cut_off.store_watch.on_transaction = cut_here

        async def partition() -> None:
            await mid_surge(cluster)
            cut_off.store_watch.armed = True
            held = await asyncio.wait_for(caught.get(), 30)
            cut_off.links["store"].cut()
            report["fault at"] = time.monotonic()
            cut_at = time.time()
            fault.set()
            session = await session_of(admin, port=held.upstream_port)
            assert session is not None and session["state"] == "idle in transaction", session
            assert session["holds row locks"], session
            report["cut mid-transaction"] = session
            # PostgreSQL ends the session it no longer hears from, and its locks with it. When,
            # its log says: this loop shares the test's event loop with the proxies and the API,
            # and may look late.
            deadline = time.monotonic() + CUT_SECONDS
            while time.monotonic() < deadline:
                if await session_of(admin, pid=session["pid"]) is None:
                    break
                await asyncio.sleep(0.2)
            report["session gone from pg_stat_activity after (s)"] = round(
                time.monotonic() - report["fault at"], 1
            )
            ended = cluster.postgres.fatal_of(session["pid"])
            assert ended is not None, f"PostgreSQL did not end session {session['pid']}"
            report["session ended by PostgreSQL after (s)"] = round(ended[0] - cut_at, 1)
            report["why"] = ended[1]
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            cut_off.links["store"].heal()
            store.resume()

        admin = await psycopg.AsyncConnection.connect(cluster.postgres.url(), autocommit=True)
        async with admin:
            await play(cluster, surge, fault, partition(), report)
        assert "idle-in-transaction timeout" in report["why"], report
        assert report["session ended by PostgreSQL after (s)"] < CUT_SECONDS, report
        print(f"\n{cut_off.name} cut off from the store for {CUT_SECONDS} s: {report}")


async def test_a_worker_cut_off_from_outside_services_through_resets_and_delay_loses_nothing(
    cluster: Cluster,
) -> None:
    surge = Surge.build(seed=14)
    fault = asyncio.Event()
    report: dict[str, Any] = {}
    cut_off = cluster.hosts[0]
    services = [host.proxies["services"] for host in cluster.hosts]
    for proxy in services:
        proxy.reset_rate = 0.2
        proxy.delay = 0.2

    async def partition() -> None:
        await mid_surge(cluster)
        report["cut during a call"] = await in_flight(cut_off.proxies["services"])
        cut_off.links["services"].cut()
        report["fault at"] = time.monotonic()
        fault.set()
        await asyncio.sleep(CUT_SECONDS)
        cut_off.links["services"].heal()

    await play(cluster, surge, fault, partition(), report)
    report["connections"] = sum(proxy.stats.connections for proxy in services)
    report["resets"] = sum(proxy.stats.resets for proxy in services)
    report["delayed requests"] = sum(proxy.stats.delayed_chunks for proxy in services)
    assert report["resets"] > 0 and report["delayed requests"] > 0
    print(f"\n{cut_off.name} cut off from the services, 20 % resets, 200 ms: {report}")


async def test_a_store_restart_mid_surge_answers_503_with_retry_after_and_loses_nothing(
    cluster: Cluster,
) -> None:
    surge = Surge.build(seed=15)
    fault = asyncio.Event()
    report: dict[str, Any] = {}
    probe = backorder(new_id("probe"), surge.skus[0])

    async def restart() -> None:
        await mid_surge(cluster)
        # As a crash would: no shutdown, recovery from the WAL on the next start.
        await asyncio.to_thread(cluster.postgres.stop, immediate=True)
        down_at = report["fault at"] = time.monotonic()
        fault.set()
        refused = await cluster.api.post("/v1/backorders", json=probe, headers=ORDER)
        health = await cluster.api.get("/healthz")
        assert refused.status_code == 503, refused.text
        assert "store is unavailable" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        assert health.status_code == 503 and health.json()["store"].startswith("unavailable")
        await asyncio.sleep(max(0.0, down_at + STORE_DOWN_SECONDS - time.monotonic()))
        await asyncio.to_thread(cluster.postgres.start)
        report["store down (s)"] = round(time.monotonic() - down_at, 1)

    await play(cluster, surge, fault, restart(), report)
    # The order system met the outage too, and its retries made every request whole.
    assert surge.retries.reasons["503"] > 0, surge.retries.reasons
    # The start refused during the outage wrote nothing.
    missing = await cluster.api.get(f"/v1/backorders/{probe['order_id']}/1", headers=ORDER)
    assert missing.status_code == 404, missing.text
    print(f"\nPostgreSQL restarted, down {STORE_DOWN_SECONDS} s: {report}")
