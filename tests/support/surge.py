"""A surge of backordered lines through the API while a fault strikes, and the end state it
must reach: every line shipped or cancelled, every effect exactly once.

Built like the crash chaos tests' surge (`tests/test_chaos_crashes.py`): lines over a few SKUs,
supplier receipts in three waves that together bring in exactly the demand, a few cancels; the
first two thirds of the lines and the first wave before the fault, the rest once it has struck.
Every request is sent as an order system does, again on a 5xx or a broken connection, until
answered (`tests.chaos.send_until_answered`). The end state is judged by the records checker
(`tests.chaos.record_problems`: the simulators' records against the store, and the store
audit) plus what only the surge knows: which lines were cancelled, what the receipts brought.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType, PendingActivityState

from domain.line.state import LineState
from store.tables import LineRow, ReceiptRow, ShipmentRow, SkuRow
from tests.support.chaos import Retries, record_problems, send_until_answered
from tests.support.cluster import Cluster
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, SUPPLIER_TOKENS, backorder

ORDER = {"Authorization": f"Bearer {ORDER_TOKEN}"}
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}
ACME = {"Authorization": f"Bearer {SUPPLIER_TOKENS['acme']}"}
CHANNELS = ["web", "amazon", "walmart", "ebay", "etsy"]
BEFORE_THE_FAULT = 2 / 3
"""The share of the lines started before the fault strikes."""


@dataclass
class Surge:
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
    def build(cls, seed: int, *, lines: int = 60, skus: int = 3) -> Surge:
        rng = random.Random(seed)
        tag = uuid.uuid4().hex[:6]
        sku_ids = [f"net-{tag}-{n}" for n in range(skus)]
        base = datetime.now(UTC) - timedelta(minutes=30)
        bodies = []
        for n in range(lines):
            order = f"nx-{tag}-{n:03d}"
            tier = "vip" if rng.random() < 0.2 else "standard"
            bodies.append(
                backorder(
                    order,
                    sku_ids[n % skus],
                    rng.randint(1, 3),
                    ship_policy="complete" if n % 9 == 4 else "partial",
                    ordered_at=base + timedelta(seconds=n),
                    channel=rng.choice(CHANNELS),
                    unit_price=f"{rng.randint(500, 9999) / 100:.2f}",
                    customer={"id": f"c-{order}", "email": f"{order}@example.com", "tier": tier},
                )
            )
        demand = Counter[str]()
        for body in bodies:
            demand[body["sku"]] += body["quantity"]
        receipts: list[list[dict[str, Any]]] = [[], [], []]
        for sku in sku_ids:
            waves = [demand[sku] * 4 // 10, demand[sku] * 3 // 10]
            waves.append(demand[sku] - sum(waves))
            for wave, quantity in enumerate(waves):
                first = quantity // 3
                for part, units in enumerate((first, quantity - first)):
                    if units > 0:
                        receipt = {"receipt_id": f"{sku}-w{wave}-p{part}", "sku": sku}
                        receipts[wave].append(receipt | {"quantity": units})
        split = int(lines * BEFORE_THE_FAULT)
        cancels = {body["order_id"] for body in rng.sample(bodies[split:], lines // 10)}
        cancels |= {body["order_id"] for body in rng.sample(bodies[lines // 3 : split], 3)}
        return cls(sku_ids, bodies, receipts, cancels)

    @property
    def keys(self) -> list[str]:
        return [f"backorder:{line['order_id']}:1" for line in self.lines]

    async def start(self, cluster: Cluster, line: dict[str, Any]) -> None:
        order = line["order_id"]
        response = await send_until_answered(
            lambda: cluster.api.post("/v1/backorders", json=line, headers=ORDER),
            accept={200, 201},
            what=f"start of {order}",
            retries=self.retries,
        )
        self.answers[f"start:{order}"] = response.status_code
        if order in self.cancels:
            await asyncio.sleep(0.2)
            response = await send_until_answered(
                lambda: cluster.api.post(
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

    async def put_sku(self, cluster: Cluster, sku: str) -> None:
        await send_until_answered(
            lambda: cluster.api.put(
                f"/v1/skus/{sku}", json={"name": sku, "free_stock": 0}, headers=OPS
            ),
            accept={200, 201},
            what=f"catalog entry {sku}",
        )

    async def receive(self, cluster: Cluster, wave: int) -> None:
        async def one(receipt: dict[str, Any]) -> None:
            response = await send_until_answered(
                lambda: cluster.api.post("/v1/suppliers/acme/receipts", json=receipt, headers=ACME),
                accept={200, 201},
                what=f"receipt {receipt['receipt_id']}",
                retries=self.retries,
            )
            self.answers[f"receipt:{receipt['receipt_id']}"] = response.status_code

        await asyncio.gather(*(one(receipt) for receipt in self.receipts[wave]))

    async def drive(self, cluster: Cluster, fault: asyncio.Event) -> None:
        """Lines paced over a few seconds with the first wave among them; the rest of the
        lines, the late cancels and the second wave once the fault struck; the last wave once
        everything else was answered."""
        for sku in self.skus:
            await self.put_sku(cluster, sku)
        split = int(len(self.lines) * BEFORE_THE_FAULT)
        async with asyncio.TaskGroup() as traffic:
            for n, line in enumerate(self.lines[:split]):
                if n == split // 4:
                    traffic.create_task(self.receive(cluster, 0))
                traffic.create_task(self.start(cluster, line))
                await asyncio.sleep(0.08)
            await fault.wait()
            traffic.create_task(self.receive(cluster, 1))
            for line in self.lines[split:]:
                traffic.create_task(self.start(cluster, line))
                await asyncio.sleep(0.05)
        await self.receive(cluster, 2)


async def shipments_in_store(cluster: Cluster) -> int:
    def count() -> int:
        with cluster.db.reading() as session:
            return len(session.exec(select(ShipmentRow.idempotency_key)).all())

    return await asyncio.to_thread(count)


async def mid_surge(cluster: Cluster, shipments: int = 5, within: float = 60.0) -> None:
    """Until some lines have shipped: the surge is in full flow."""
    deadline = time.monotonic() + within
    while await shipments_in_store(cluster) < shipments:
        if time.monotonic() > deadline:
            raise AssertionError(f"not {shipments} shipments within {within} s\n{cluster.logs()}")
        await asyncio.sleep(0.1)


async def running_workflows(cluster: Cluster) -> str:
    """Each running workflow with its pending activities: what it waits for."""
    query = f'TaskQueue = "{cluster.settings.task_queue}" AND ExecutionStatus = "Running"'
    described = []
    async for execution in cluster.client.list_workflows(query):
        raw = (await cluster.client.get_workflow_handle(execution.id).describe()).raw_description
        activities = [
            f"{a.activity_type.name} (attempt {a.attempt}, {PendingActivityState.Name(a.state)}, "
            f"last failure: {a.last_failure.message or '-'})"
            for a in raw.pending_activities
        ]
        described.append(f"  {execution.id}: {'; '.join(activities) or 'no pending activity'}")
    return "\n".join(described) or "  none"


async def settle(cluster: Cluster, surge: Surge, within: float) -> None:
    """Until every line is final in the store and no workflow of the stack runs."""
    deadline = time.monotonic() + within

    def open_lines() -> list[str]:
        with cluster.db.reading() as session:
            rows = {row.key: row for row in session.exec(select(LineRow))}
        described = []
        for key in surge.keys:
            row = rows.get(key)
            if row is None:
                described.append(f"{key}: not in the store")
            elif row.state not in (LineState.SHIPPED, LineState.CANCELLED):
                described.append(
                    f"{key}: {row.state}, allocated {row.allocated_quantity}, shipped "
                    f"{row.shipped_quantity} of {row.quantity}"
                )
        return described

    while pending := await asyncio.to_thread(open_lines):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(pending)} lines not final within {within} s:\n"
                + "\n".join(pending)
                + f"\nrunning workflows:\n{await running_workflows(cluster)}\n{cluster.logs()}"
            )
        await asyncio.sleep(0.5)
    running = f'TaskQueue = "{cluster.settings.task_queue}" AND ExecutionStatus = "Running"'
    while (await cluster.client.count_workflows(running)).count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"workflows still running after {within} s:\n"
                f"{await running_workflows(cluster)}\n{cluster.logs()}"
            )
        await asyncio.sleep(0.5)


async def assert_exactly_once(cluster: Cluster, surge: Surge) -> dict[str, int]:
    """Every workflow completed; every line shipped or cancelled as asked, each effect once
    (the records checker and the store audit); every receipt counted once. Returns the
    outcome counts."""
    queue = cluster.settings.task_queue
    not_completed = [
        f"{w.id}: {w.status.name if w.status else '?'}"
        async for w in cluster.client.list_workflows(
            f'TaskQueue = "{queue}" AND ExecutionStatus != "Completed"'
        )
    ]
    assert not_completed == [], "workflows that did not complete"

    problems = await record_problems(cluster.simulators_url, cluster.db, surge.keys)
    assert problems == [], "\n".join(problems)

    def store_facts() -> tuple[dict[str, str], dict[str, int], int]:
        with cluster.db.reading() as session:
            states = {row.key: row.state for row in session.exec(select(LineRow))}
            stock_in = {
                row.sku: row.stock_in_total
                for row in session.exec(select(SkuRow).where(col(SkuRow.sku).in_(surge.skus)))
            }
            receipts = len(session.exec(select(ReceiptRow.receipt_id)).all())
        return states, stock_in, receipts

    states, stock_in, receipts = await asyncio.to_thread(store_facts)
    assert sorted(states) == sorted(surge.keys)
    for line in surge.lines:
        order = line["order_id"]
        assert surge.answers[f"start:{order}"] in (200, 201)
        state = states[f"backorder:{order}:1"]
        answer = surge.answers.get(f"cancel:{order}")
        if answer in (200, 202):
            assert state == LineState.CANCELLED, f"{order}: cancel answered {answer}, {state}"
        elif answer is None:
            assert state == LineState.SHIPPED, f"{order}: never cancelled, yet {state}"
    all_receipts = [receipt for wave in surge.receipts for receipt in wave]
    assert receipts == len(all_receipts)
    sent = Counter[str]()
    for receipt in all_receipts:
        sent[receipt["sku"]] += receipt["quantity"]
    assert stock_in == dict(sent)
    outcome = Counter(states.values())
    return {"shipped": outcome[LineState.SHIPPED], "cancelled": outcome[LineState.CANCELLED]}


async def timed_out_tasks(cluster: Cluster, surge: Surge) -> Counter[str]:
    """Across the surge's workflows: workflow tasks that timed out, split by whether a worker
    had started them (`started by wN`) or none took them in time (`not started`)."""
    by_pid = {host.identity_prefix: host.name for host in cluster.hosts}
    found = Counter[str]()
    for key in surge.keys:
        started_by: dict[int, str] = {}
        async for event in cluster.client.get_workflow_handle(key).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                identity = event.workflow_task_started_event_attributes.identity
                name = next((n for p, n in by_pid.items() if identity.startswith(p)), identity)
                started_by[event.event_id] = name
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                attributes = event.workflow_task_timed_out_event_attributes
                who = started_by.get(attributes.started_event_id)
                found[f"started by {who}" if who else "not started"] += 1
    return found


async def play(
    cluster: Cluster,
    surge: Surge,
    fault: asyncio.Event,
    inject: Coroutine[Any, Any, None],
    report: dict[str, Any],
    *,
    settle_within: float = 90.0,
) -> None:
    """Drive the surge while `inject` strikes (it sets `fault` when it has, and
    report["fault at"]), wait for every line to settle, and check that each effect happened
    exactly once."""
    began = time.monotonic()
    async with asyncio.TaskGroup() as scenario:
        scenario.create_task(surge.drive(cluster, fault))
        scenario.create_task(inject)
    await settle(cluster, surge, settle_within)
    report["settled after the fault (s)"] = round(time.monotonic() - report.pop("fault at"), 1)
    report |= await assert_exactly_once(cluster, surge)
    report["requests retried"] = dict(surge.retries.reasons)
    report["surge (s)"] = round(time.monotonic() - began, 1)
