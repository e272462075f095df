"""Chaos tests for crashes: `kill -9` of the worker during a surge, and a stop or `kill -9` of the
Temporal dev server during a surge, each followed by a restart. Every line must end shipped or
cancelled, with exactly one shipment per allocation step, one refund per cancellation and one
message per event in the simulators' records (`tests/support/chaos.py` checks them against the
store).

Each test builds a stack of its own, on loopback only:

- a Temporal dev server (`cli.stack.TemporalDevServer`: a file in the test's folder, WAL, free
  ports), so it can be killed and restarted on the same file and ports;
- the simulators and the API in the test process;
- the worker as a separate process (`python -m worker.main`, configured by `BACKORDERS_*`), so
  that `kill -9` cuts it off mid-activity as a real crash does;
- the store on PostgreSQL (a fresh database, `tests.support.stack.postgres_database`): with the
  worker in its own process, the store is shared by two processes, which is the production
  shape (docker-compose runs the API and workers on PostgreSQL), and a killed worker leaves
  open transactions that PostgreSQL must roll back while the SKU row locks (`FOR UPDATE`) are
  contended by the API's process. Like the rest of the suite, it is skipped with the reason
  when PostgreSQL is unreachable on a developer's machine, and fails in CI.

The simulators answer every POST a quarter of a second after they recorded it, so that each
fault is injected while effects are recorded but not yet acknowledged: the retry after the crash
must find them (by idempotency key) instead of making them again. The default policy counts in
real days, so no deadline fires during a test; the lines end only by shipping or cancelling.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import col, select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from api.app import create_app
from cli.stack import RunningServer, TemporalDevServer, serve
from config.settings import Settings
from domain.contract.lines import line_key
from domain.line.payment import open_payment
from domain.line.state import LineState
from simulators.app import create_app as create_simulators
from store.db import Database
from store.tables import LineRow, PaymentRow, ReceiptRow, ShipmentRow, SkuRow
from tests.support.chaos import (
    EffectFacts,
    LineFacts,
    Retries,
    StoreFacts,
    WorkerProcess,
    fetch_records,
    find_problems,
    read_store,
    record_problems,
    send_until_answered,
    settle,
)
from tests.support.factories import (
    OPS_TOKEN,
    ORDER_TOKEN,
    SUPPLIER_TOKENS,
    backorder,
    payment_terms,
)
from tests.support.poll import eventually
from tests.support.stack import free_port, postgres_database

LINES = 80
SKU_COUNT = 4
ACK_DELAY_SECONDS = 0.25
"""How long the simulators hold an answer after recording the effect."""
SHIPMENTS_BEFORE_FAULT = 5
"""The fault comes once this many shipments are in the store (some lines shipped, not all)."""
SHORT_OUTAGE_SECONDS = 3.0
"""A blip: the Temporal client's own retries ride it out, the API answers late but well."""
LONG_OUTAGE_SECONDS = 14.0
"""Longer than the client's own retries (`CLIENT_RETRIES_FOR_SECONDS`): the API answers errors,
and the order system asks again."""
CLIENT_RETRIES_FOR_SECONDS = 10.0
"""The Temporal client's default `RetryConfig.max_elapsed_time_millis`."""
SETTLE_WITHIN = 100.0
"""From the restart to every line final and every workflow closed. Activities cut off by a
killed worker are retried after their 30 s start-to-close timeout, so this is the bulk of it."""
CHANNELS = ["web", "amazon", "walmart", "ebay", "etsy"]

ORDER = {"Authorization": f"Bearer {ORDER_TOKEN}"}
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}
ACME = {"Authorization": f"Bearer {SUPPLIER_TOKENS['acme']}"}


@dataclass
class AckDelay:
    """Holds each POST's answer after the simulator recorded its effect, and counts those held:
    effects the outside world has made that the caller has not yet been told about."""

    seconds: float
    unacknowledged: int = 0

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def hold_answer(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)  # the route has run: the effect is recorded
            if request.method == "POST":
                self.unacknowledged += 1
                try:
                    await asyncio.sleep(self.seconds)
                finally:
                    self.unacknowledged -= 1
            return response


@dataclass
class ChaosStack:
    settings: Settings
    devserver: TemporalDevServer
    client: Client
    db: Database
    simulators: RunningServer
    api_server: RunningServer
    worker: WorkerProcess
    api: httpx.AsyncClient
    ack: AckDelay

    @property
    def simulators_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.simulator_port}"

    async def simulator_faults(self, faults: dict[str, Any]) -> httpx.Response:
        """Put the simulators' faults in force (`{}`: none)."""
        async with httpx.AsyncClient(base_url=self.simulators_url) as sims:
            return await sims.put("/_faults", json=faults)

    def logs(self) -> str:
        """The worker's logs and the end of the dev server's, for a failure message."""
        temporal = self.devserver.log_path.read_text(errors="replace").splitlines()[-20:]
        return (
            self.worker.log_tail() + "\n---- temporal.log (last 20 lines)\n" + "\n".join(temporal)
        )


@pytest.fixture
async def chaos(tmp_path: Path) -> AsyncIterator[ChaosStack]:
    url, drop = postgres_database()
    settings = Settings(
        state_dir=tmp_path,
        database_url=url,
        task_queue=f"chaos-{uuid.uuid4().hex[:8]}",
        temporal_port=free_port(),
        ui_port=free_port(),
        api_port=free_port(),
        simulator_port=free_port(),
        sdk_metrics_address="",
        http_timeout_seconds=3.0,
        order_system_token=ORDER_TOKEN,
        ops_token=OPS_TOKEN,
        supplier_tokens=",".join(f"{s}={t}" for s, t in SUPPLIER_TOKENS.items()),
    )
    devserver = TemporalDevServer(settings)
    db = Database(settings.store_url)
    worker = WorkerProcess(settings, tmp_path)
    servers: list[RunningServer] = []
    api: httpx.AsyncClient | None = None
    try:
        client = await devserver.start()
        db.create_schema()
        ack = AckDelay(ACK_DELAY_SECONDS)
        simulators_app = create_simulators(tmp_path)
        ack.install(simulators_app)
        servers.append(await serve(simulators_app, "127.0.0.1", settings.simulator_port))
        app = create_app(settings, temporal=client, db=db)
        servers.append(await serve(app, "127.0.0.1", settings.api_port))
        worker.start()
        await worker.wait_ready()
        api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=60)
        yield ChaosStack(settings, devserver, client, db, servers[0], servers[1], worker, api, ack)
    finally:
        if api is not None:
            await api.aclose()
        for server in reversed(servers):
            await server.stop()
        await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(devserver.stop)
        db.dispose()
        drop()


# ---- the surge --------------------------------------------------------------------------------


@dataclass
class Surge:
    """What an order system and a supplier send: lines over a few SKUs, receipts in parts that
    add up to the whole demand, and a few cancels. Every request is retried until answered."""

    skus: list[str]
    lines: list[dict[str, Any]]
    receipts: list[list[dict[str, Any]]]
    """Three waves; together they bring in exactly what the lines ask for."""
    cancels: set[str]
    """Order ids of the lines to cancel."""
    answers: dict[str, int] = field(default_factory=dict)
    """`start:{order}`, `cancel:{order}`, `receipt:{id}` -> the status finally answered."""
    retries: Retries = field(default_factory=Retries)

    @classmethod
    def build(cls, seed: int) -> Surge:
        rng = random.Random(seed)
        tag = uuid.uuid4().hex[:6]
        skus = [f"chaos-{tag}-{n}" for n in range(SKU_COUNT)]
        base = datetime.now(UTC) - timedelta(minutes=30)
        lines = []
        for n in range(LINES):
            order = f"cx-{tag}-{n:03d}"
            tier = "vip" if rng.random() < 0.2 else "standard"
            quantity, price = rng.randint(1, 3), f"{rng.randint(500, 9999) / 100:.2f}"
            lines.append(
                backorder(
                    order,
                    skus[n % SKU_COUNT],
                    quantity,
                    # Every 9th line ships only whole: it holds its parts until complete.
                    ship_policy="complete" if n % 9 == 4 else "partial",
                    ordered_at=base + timedelta(seconds=n),
                    channel=rng.choice(CHANNELS),
                    unit_price=price,
                    customer={"id": f"c-{order}", "email": f"{order}@example.com", "tier": tier},
                    # Captures, voids and refunds ride through the crash too.
                    **payment_terms(order, n, price, quantity),
                )
            )
        demand = Counter[str]()
        for line in lines:
            demand[line["sku"]] += line["quantity"]
        receipts: list[list[dict[str, Any]]] = [[], [], []]
        for sku in skus:
            # 40 %, 30 %, the rest; each wave in two receipts of uneven size, so that lines
            # get their units in parts and some ship partially.
            waves = [demand[sku] * 4 // 10, demand[sku] * 3 // 10]
            waves.append(demand[sku] - sum(waves))
            for wave, quantity in enumerate(waves):
                first = quantity // 3
                for part, units in enumerate((first, quantity - first)):
                    if units > 0:
                        receipt_id = f"{sku}-w{wave}-p{part}"
                        receipts[wave].append(
                            {"receipt_id": receipt_id, "sku": sku, "quantity": units}
                        )
        # Mostly late lines (cancelled while they wait), a few early ones (partly allocated or
        # shipped by then: a partial refund, or a 409 if they shipped in full first).
        cancels = {line["order_id"] for line in rng.sample(lines[56:], 8)}
        cancels |= {line["order_id"] for line in rng.sample(lines[20:56], 3)}
        return cls(skus, lines, receipts, cancels)

    async def start(self, stack: ChaosStack, line: dict[str, Any]) -> None:
        order = line["order_id"]
        response = await send_until_answered(
            lambda: stack.api.post("/v1/backorders", json=line, headers=ORDER),
            accept={200, 201},
            what=f"start of {order}",
            retries=self.retries,
        )
        self.answers[f"start:{order}"] = response.status_code
        if order in self.cancels:
            await asyncio.sleep(0.2)
            response = await send_until_answered(
                lambda: stack.api.post(
                    f"/v1/backorders/{order}/1/cancel",
                    json={"reason": "customer asked"},
                    headers=ORDER,
                ),
                # 409: it shipped in full first, or an earlier try took effect.
                accept={200, 202, 409},
                what=f"cancel of {order}",
                retries=self.retries,
            )
            self.answers[f"cancel:{order}"] = response.status_code

    async def put_sku(self, stack: ChaosStack, sku: str) -> None:
        await send_until_answered(
            lambda: stack.api.put(
                f"/v1/skus/{sku}", json={"name": sku, "free_stock": 0}, headers=OPS
            ),
            accept={200, 201},
            what=f"catalog entry {sku}",
        )

    async def receive(self, stack: ChaosStack, wave: int) -> None:
        async def one(receipt: dict[str, Any]) -> None:
            response = await send_until_answered(
                lambda: stack.api.post("/v1/suppliers/acme/receipts", json=receipt, headers=ACME),
                accept={200, 201},
                what=f"receipt {receipt['receipt_id']}",
                retries=self.retries,
            )
            self.answers[f"receipt:{receipt['receipt_id']}"] = response.status_code

        await asyncio.gather(*(one(receipt) for receipt in self.receipts[wave]))

    async def drive(self, stack: ChaosStack, fault: asyncio.Event) -> None:
        """The traffic: lines paced over several seconds with the first receipts among them;
        the last lines, the cancels and the second wave of receipts only once the fault has
        struck (so they meet it); the last wave once everything else was answered."""
        for sku in self.skus:
            await self.put_sku(stack, sku)
        async with asyncio.TaskGroup() as traffic:
            for n, line in enumerate(self.lines[:56]):
                if n == 12:
                    traffic.create_task(self.receive(stack, 0))
                traffic.create_task(self.start(stack, line))
                await asyncio.sleep(0.08)
            await fault.wait()
            traffic.create_task(self.receive(stack, 1))
            for line in self.lines[56:]:
                traffic.create_task(self.start(stack, line))
                await asyncio.sleep(0.05)
        await self.receive(stack, 2)


async def shipments_in_store(db: Database) -> int:
    def count() -> int:
        with db.reading() as session:
            return len(session.exec(select(ShipmentRow.idempotency_key)).all())

    return await asyncio.to_thread(count)


async def wait_for_the_moment(stack: ChaosStack, within: float = 60.0) -> int:
    """Until some lines shipped (not all) and an effect is recorded but not yet acknowledged;
    returns how many effects are in that state."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await shipments_in_store(stack.db) >= SHIPMENTS_BEFORE_FAULT:
            while time.monotonic() < deadline:
                if stack.ack.unacknowledged > 0:
                    return stack.ack.unacknowledged
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"no moment with {SHIPMENTS_BEFORE_FAULT} shipments and an effect in flight within "
        f"{within} s:\n{stack.logs()}"
    )


# ---- the end state ----------------------------------------------------------------------------


async def running_workflows(stack: ChaosStack) -> str:
    """Each running workflow of the stack with its pending activities: what it waits for."""
    query = f'TaskQueue = "{stack.settings.task_queue}" AND ExecutionStatus = "Running"'
    described = []
    async for execution in stack.client.list_workflows(query):
        handle = stack.client.get_workflow_handle(execution.id)
        raw = (await handle.describe()).raw_description
        activities = [
            f"{a.activity_type.name} (attempt {a.attempt}, {PendingActivityState.Name(a.state)}, "
            f"started {a.last_started_time.ToDatetime():%H:%M:%S}, "
            f"last failure: {a.last_failure.message or '-'})"
            for a in raw.pending_activities
        ]
        described.append(f"  {execution.id}: {'; '.join(activities) or 'no pending activity'}")
    return "\n".join(described) or "  none"


async def assert_exactly_once(stack: ChaosStack, surge: Surge) -> dict[str, int]:
    """The end assertions every chaos test makes; returns the outcome counts."""
    keys = [f"backorder:{line['order_id']}:1" for line in surge.lines]
    queue = stack.settings.task_queue
    not_completed = [
        f"{w.id}: {w.status.name if w.status else '?'}"
        async for w in stack.client.list_workflows(
            f'TaskQueue = "{queue}" AND ExecutionStatus != "Completed"'
        )
    ]
    assert not_completed == [], "workflows that did not complete"

    problems = await record_problems(stack.simulators_url, stack.db, keys)
    assert problems == [], "\n".join(problems)

    def store_facts() -> tuple[dict[str, str], dict[str, int], int]:
        with stack.db.reading() as session:
            states = {row.key: row.state for row in session.exec(select(LineRow))}
            stock_in = {
                row.sku: row.stock_in_total
                for row in session.exec(select(SkuRow).where(col(SkuRow.sku).in_(surge.skus)))
            }
            receipts = len(session.exec(select(ReceiptRow.receipt_id)).all())
        return states, stock_in, receipts

    states, stock_in, receipts = await asyncio.to_thread(store_facts)
    # Nothing accepted was lost, and nothing appeared that nobody asked for.
    assert sorted(states) == sorted(keys)
    for line in surge.lines:
        assert surge.answers[f"start:{line['order_id']}"] in (200, 201)
    # A line is cancelled if and only if it was asked to be and the cancel was not refused.
    for line in surge.lines:
        order = line["order_id"]
        state = states[f"backorder:{order}:1"]
        answer = surge.answers.get(f"cancel:{order}")
        if answer in (200, 202):
            assert state == LineState.CANCELLED, f"{order}: cancel answered {answer}, {state}"
        elif answer is None:
            assert state == LineState.SHIPPED, f"{order}: never cancelled, yet {state}"
    # Every receipt counted once: the stock that came in is what the supplier sent.
    all_receipts = [receipt for wave in surge.receipts for receipt in wave]
    assert receipts == len(all_receipts)
    sent = Counter[str]()
    for receipt in all_receipts:
        sent[receipt["sku"]] += receipt["quantity"]
    assert stock_in == dict(sent)
    outcome = Counter(states.values())
    assert outcome[LineState.CANCELLED] >= 3, f"too few cancels took effect: {outcome}"
    return {
        "shipped": outcome[LineState.SHIPPED],
        "cancelled": outcome[LineState.CANCELLED],
        "cancels answered 409": sum(1 for v in surge.answers.values() if v == 409),
    }


# ---- the tests --------------------------------------------------------------------------------


async def play(
    chaos: ChaosStack,
    surge: Surge,
    fault: asyncio.Event,
    inject: Coroutine[Any, Any, None],
    report: dict[str, Any],
) -> None:
    """Drive the surge while `inject` strikes (setting `fault` and report["fault at"]), wait
    for every line to settle, and check that each effect happened exactly once."""
    began = time.monotonic()
    async with asyncio.TaskGroup() as scenario:
        scenario.create_task(surge.drive(chaos, fault))
        scenario.create_task(inject)

    async def explain() -> str:
        return f"running workflows:\n{await running_workflows(chaos)}\n{chaos.logs()}"

    await settle(
        chaos.client,
        chaos.db,
        [line_key(line["order_id"], "1") for line in surge.lines],
        within=SETTLE_WITHIN,
        task_queue=chaos.settings.task_queue,
        explain=explain,
    )
    report["settled after the fault (s)"] = round(time.monotonic() - report.pop("fault at"), 1)
    report |= await assert_exactly_once(chaos, surge)
    report["requests retried"] = dict(surge.retries.reasons)
    report["total (s)"] = round(time.monotonic() - began, 1)


async def test_kill_9_of_the_worker_during_a_surge_loses_and_doubles_nothing(
    chaos: ChaosStack,
) -> None:
    surge = Surge.build(seed=1)
    fault = asyncio.Event()
    report: dict[str, Any] = {}

    async def crash_and_restart() -> None:
        report["unacknowledged at the kill"] = await wait_for_the_moment(chaos)
        report["shipments at the kill"] = await shipments_in_store(chaos.db)
        chaos.worker.kill()
        fault.set()
        report["fault at"] = time.monotonic()
        await asyncio.sleep(1.0)
        chaos.worker.start()
        await chaos.worker.wait_ready()

    await play(chaos, surge, fault, crash_and_restart(), report)
    print(f"\nworker kill -9: {report}")


@pytest.mark.parametrize(
    ("stop_signal", "down_for"),
    [(signal.SIGTERM, SHORT_OUTAGE_SECONDS), (signal.SIGKILL, LONG_OUTAGE_SECONDS)],
    ids=["term-short-outage", "kill-9-long-outage"],
)
async def test_restart_of_the_temporal_server_during_a_surge_loses_and_doubles_nothing(
    chaos: ChaosStack, stop_signal: signal.Signals, down_for: float
) -> None:
    surge = Surge.build(seed=2)
    fault = asyncio.Event()
    report: dict[str, Any] = {}

    async def stop_and_restart() -> None:
        report["unacknowledged at the stop"] = await wait_for_the_moment(chaos)
        report["shipments at the stop"] = await shipments_in_store(chaos.db)
        process = chaos.devserver.process
        assert process is not None
        process.send_signal(stop_signal)
        await asyncio.to_thread(process.wait, 30)
        fault.set()
        report["fault at"] = time.monotonic()
        await asyncio.sleep(down_for)
        # The same file and ports; the worker and the API's client reconnect by themselves.
        await chaos.devserver.start()
        report["back after (s)"] = round(time.monotonic() - report["fault at"], 1)

    await play(chaos, surge, fault, stop_and_restart(), report)
    print(f"\nTemporal server {stop_signal.name}, down {down_for} s: {report}")
    if down_for > CLIENT_RETRIES_FOR_SECONDS:
        # Longer than the Temporal client's own retries: the API must have answered some
        # requests with an error, and the order system's retries must have made them whole.
        assert surge.retries.total > 0, "no request met the outage"


# ---- the checker bites ------------------------------------------------------------------------


def _healthy_records() -> tuple[dict[str, list[dict[str, Any]]], StoreFacts]:
    """Two lines as a correct run leaves them: A shipped 3 units in two parts, B (2 units)
    cancelled while it waited and refunded in full."""
    a, b = "backorder:o-a:1", "backorder:o-b:1"

    def row(seq: int, key: str, path: str = "/", **body: Any) -> dict[str, Any]:
        return {"seq": seq, "path": path, "idempotency_key": key, "body": body, "response": {}}

    records = {
        "carrier": [
            row(1, f"{a}:shipment:1", reference=a, quantity=2),
            row(2, f"{a}:shipment:2", reference=a, quantity=1),
        ],
        "payments": [row(1, f"{b}:refund", "/refunds", reference=b, amount="20.00")],
        "notifications": [
            row(1, f"{a}:message:confirmation", reference=a, kind="backorder_confirmation"),
            row(2, f"{b}:message:confirmation", reference=b, kind="backorder_confirmation"),
            row(3, f"{a}:message:shipment:1", reference=a, kind="partially_shipped"),
            row(4, f"{a}:message:shipment:2", reference=a, kind="shipped"),
            row(5, f"{b}:message:cancelled", reference=b, kind="cancelled_refunded"),
        ],
    }
    price = Decimal("10.00")
    store = StoreFacts(
        lines={
            a: LineFacts(a, "S", 3, price, "shipped", False, 3, 3, 0, 3),
            b: LineFacts(b, "S", 2, price, "cancelled", False, 0, 0, 0, 0),
        },
        shipments=[
            EffectFacts(f"{a}:shipment:1", a, quantity=2, sequence=1, carrier_shipment_id="s1"),
            EffectFacts(f"{a}:shipment:2", a, quantity=1, sequence=2, carrier_shipment_id="s2"),
        ],
        refunds=[EffectFacts(f"{b}:refund", b, quantity=2, amount=Decimal("20.00"))],
        messages=[
            EffectFacts(str(r["idempotency_key"]), str(r["body"]["reference"]))
            for r in records["notifications"]
        ],
        audit={"S": []},
    )
    return records, store


def _doctored(
    change: Callable[[dict[str, list[dict[str, Any]]], StoreFacts], None],
) -> list[str]:
    records, store = _healthy_records()
    change(records, store)
    return find_problems(records, store)


def test_the_records_checker_finds_effects_doubled_lost_or_unrecorded() -> None:
    """The checker itself, on records doctored the ways a broken service would leave them."""
    a, b = "backorder:o-a:1", "backorder:o-b:1"
    assert find_problems(*_healthy_records()) == []

    def ship_again(records: dict[str, list[dict[str, Any]]], _: StoreFacts) -> None:
        # A retry that made a new key: the carrier ships a third time.
        body = {"reference": a, "quantity": 1}
        records["carrier"].append(
            {"seq": 3, "idempotency_key": f"{a}:shipment:2:retry", "body": body}
        )

    def refund_twice(records: dict[str, list[dict[str, Any]]], _: StoreFacts) -> None:
        body = {"reference": b, "amount": "20.00"}
        records["payments"].append(
            {"seq": 2, "path": "/refunds", "idempotency_key": f"{b}:refund:2", "body": body}
        )

    def no_refund(records: dict[str, list[dict[str, Any]]], store: StoreFacts) -> None:
        records["payments"].clear()
        store.refunds.clear()

    def same_key_twice(records: dict[str, list[dict[str, Any]]], _: StoreFacts) -> None:
        records["notifications"].append(dict(records["notifications"][3], seq=6))

    def second_shipped_message(records: dict[str, list[dict[str, Any]]], _: StoreFacts) -> None:
        body = {"reference": a, "kind": "shipped"}
        records["notifications"].append(
            {"seq": 6, "idempotency_key": f"{a}:message:shipment:3", "body": body}
        )

    def store_lost_a_shipment(_: dict[str, list[dict[str, Any]]], store: StoreFacts) -> None:
        store.shipments.pop()

    def still_waiting(_: dict[str, list[dict[str, Any]]], store: StoreFacts) -> None:
        store.lines[b] = replace(store.lines[b], state="waiting", waiting=True)

    def oversold(_: dict[str, list[dict[str, Any]]], store: StoreFacts) -> None:
        store.audit["S"] = ["S: free stock is -1"]

    expectations = {
        ship_again: [
            f"{a}: the carrier got shipment {a}:shipment:2:retry (1 units) that the store",
            f"{a}: the carrier got 4 units for it in 3 shipments",
        ],
        refund_twice: [f"{b}: refunded 40.00 in all, owed 20.00", f"{b}: payments refunded"],
        no_refund: [f"{b}: cancelled with 2 units unshipped, and payments got 0 cancellation"],
        same_key_twice: [
            f"notifications: idempotency key {a}:message:shipment:2 recorded 2 times",
            f"{a}: 2 shipped messages for the event shipment:2",
        ],
        second_shipped_message: [f"{a}: shipped with 2 shipped messages, expected 1"],
        store_lost_a_shipment: [f"{a}: the carrier got shipment {a}:shipment:2 (1 units)"],
        still_waiting: [f"{b}: not final: waiting"],
        oversold: ["store audit of S: S: free stock is -1"],
    }
    for change, expected in expectations.items():
        problems = _doctored(change)
        for text in expected:
            assert any(p.startswith(text) for p in problems), (change.__name__, problems)


def _line_with_payment_terms() -> tuple[dict[str, list[dict[str, Any]]], StoreFacts]:
    """A line of 2 x 10.00 authorized at order (nothing charged): one unit shipped and was
    captured, then the line was cancelled and the rest of its hold given up."""
    c = "backorder:o-c:1"
    now = datetime.now(UTC)
    payment = open_payment(
        method="card",
        currency="USD",
        places=2,
        amount=Decimal("20.00"),
        captured=Decimal(0),
        authorized_at=now,
        expires_at=now + timedelta(days=7),
    )

    def row(seq: int, key: str, path: str, **body: Any) -> dict[str, Any]:
        return {"seq": seq, "path": path, "idempotency_key": key, "body": body, "response": {}}

    records = {
        "carrier": [row(1, f"{c}:shipment:1", "/shipments", reference=c, quantity=1)],
        "payments": [
            row(
                1,
                f"{c}:capture:1",
                "/captures",
                reference=c,
                authorization_id="card",
                amount="10.00",
            ),
            row(
                2,
                f"{c}:void:1",
                "/voids",
                reference=c,
                authorization_id="card",
                amount="10.00",
                reason="too slow",
            ),
        ],
        "notifications": [
            row(
                1,
                f"{c}:message:confirmation",
                "/messages",
                reference=c,
                kind="backorder_confirmation",
            ),
            row(2, f"{c}:message:shipment:1", "/messages", reference=c, kind="partially_shipped"),
            row(3, f"{c}:message:cancelled", "/messages", reference=c, kind="cancelled_refunded"),
        ],
    }
    store = StoreFacts(
        lines={c: LineFacts(c, "S", 2, Decimal("10.00"), "cancelled", False, 1, 1, 0, 1, payment)},
        shipments=[
            EffectFacts(f"{c}:shipment:1", c, quantity=1, sequence=1, carrier_shipment_id="s1")
        ],
        refunds=[],
        messages=[EffectFacts(str(r["idempotency_key"]), c) for r in records["notifications"]],
        audit={"S": []},
    )
    return records, store


def test_the_records_checker_finds_money_taken_or_kept_wrongly() -> None:
    c = "backorder:o-c:1"
    assert find_problems(*_line_with_payment_terms()) == []

    def change(edit: Callable[[list[dict[str, Any]]], None]) -> list[str]:
        records, store = _line_with_payment_terms()
        edit(records["payments"])
        return find_problems(records, store)

    def capture_without_shipment(rows: list[dict[str, Any]]) -> None:
        rows.append(
            {
                "seq": 3,
                "path": "/captures",
                "idempotency_key": f"{c}:capture:2",
                "body": {"reference": c, "authorization_id": "card", "amount": "10.00"},
            }
        )

    def nothing_given_up(rows: list[dict[str, Any]]) -> None:
        rows.pop()

    def refund_never_charged(rows: list[dict[str, Any]]) -> None:
        rows.append(
            {
                "seq": 3,
                "path": "/refunds",
                "idempotency_key": f"{c}:refund",
                "body": {"reference": c, "amount": "10.00"},
            }
        )

    assert any("never left" in problem for problem in change(capture_without_shipment))
    assert any("what shipped is worth" in problem for problem in change(capture_without_shipment))
    assert any("0 voids gave it up" in problem for problem in change(nothing_given_up))
    found = change(refund_never_charged)
    assert any("what shipped is worth 10.00" in problem for problem in found)


async def test_kill_9_between_a_shipment_and_its_capture_charges_once(chaos: ChaosStack) -> None:
    """Lines authorized at order (nothing charged); captures slowed down, so that a shipment is
    in the store before its capture is. The worker is killed at that moment, then restarted:
    every shipment is captured exactly once, for what it carried."""
    tag = uuid.uuid4().hex[:6]
    sku = f"cap-{tag}"
    assert (
        await chaos.api.put(
            f"/v1/skus/{sku}", json={"name": "Kettle", "free_stock": 0}, headers=OPS
        )
    ).status_code in (200, 201)
    orders = [f"cap-{tag}-{n}" for n in range(6)]
    for order in orders:
        body = backorder(
            order,
            sku,
            2,
            unit_price="15.00",
            payment={"reference": f"card_{order}", "captured_amount": "0"},
        )
        assert (await chaos.api.post("/v1/backorders", json=body, headers=ORDER)).status_code == 201
    keys = [line_key(order, "1") for order in orders]
    slow = {"payments": {"latency_ms": 1500}}
    assert (await chaos.simulator_faults(slow)).status_code == 200

    def shipped_not_captured() -> list[str]:
        with chaos.db.reading() as session:
            shipped = set(
                session.exec(
                    select(ShipmentRow.line_key).where(col(ShipmentRow.line_key).in_(keys))
                )
            )
            captured = set(
                session.exec(
                    select(PaymentRow.line_key).where(
                        col(PaymentRow.line_key).in_(keys), PaymentRow.kind == "capture"
                    )
                )
            )
        return sorted(shipped - captured)

    for order in orders:
        await eventually(
            lambda order=order: chaos.api.get(f"/v1/backorders/{order}/1", headers=ORDER),  # type: ignore[misc]
            lambda response: response.json().get("state") == "waiting",
            within=30,
            what=f"{order} waiting",
        )
    receipt = {"receipt_id": f"r-{tag}", "sku": sku, "quantity": 12}
    assert (
        await chaos.api.post("/v1/suppliers/acme/receipts", json=receipt, headers=ACME)
    ).status_code == 201
    caught = await eventually(
        lambda: asyncio.to_thread(shipped_not_captured),
        bool,
        within=30,
        what="a shipment ahead of its capture",
    )
    chaos.worker.kill()
    await asyncio.sleep(1.0)
    await chaos.simulator_faults({})
    chaos.worker.start()
    await chaos.worker.wait_ready()
    await settle(
        chaos.client, chaos.db, keys, within=SETTLE_WITHIN, task_queue=chaos.settings.task_queue
    )
    records = await fetch_records(chaos.simulators_url)
    store = await asyncio.to_thread(read_store, chaos.db, keys)
    assert find_problems(records, store) == []
    captures = [row for row in records["payments"] if row["path"] == "/captures"]
    assert sorted(row["body"]["reference"] for row in captures) == sorted(keys)
    assert caught, "the kill came between a shipment and its capture"
