"""The scenarios that run on the full stack: surge against the floor, API against raw starts,
worker memory with many lines waiting, and history events per line."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from admission import Workflows
from bench.floor import FLOOR_SIGNAL, FLOOR_WORKFLOW
from bench.stack import FLOOR_QUEUE, BenchStack, say, until
from domain.contract.lines import ALLOCATED, STATUS, line_key
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest

CONCURRENCY = 50
"""Requests in flight at once, for starts through the API and through the client alike."""


async def bounded(count: int, work: Callable[[int], Awaitable[None]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(index: int) -> None:
        async with gate:
            await work(index)

    await asyncio.gather(*(one(index) for index in range(count)))


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def line_body(
    order_id: str, sku: str, *, tier: str = "standard", channel: str = "web"
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line_id": "1",
        "sku": sku,
        "quantity": 1,
        "unit_price": "24.00",
        "currency": "USD",
        "channel": channel,
        "customer": {"id": f"c-{order_id}", "email": f"{order_id}@example.com", "tier": tier},
        "ordered_at": datetime.now(UTC).isoformat(),
        "ship_policy": "partial",
    }


class Driver:
    """Drives the stack as its users do, through the API's client: the order system, a
    supplier, ops."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        settings = stack.settings
        self.supplier, supplier_token = next(iter(settings.supplier_token_map.items()))
        self.callers = {
            "order": stack.api.as_token(settings.order_system_token),
            "ops": stack.api.as_token(settings.ops_token),
            "supplier": stack.api.as_token(supplier_token),
        }

    async def call(self, method: str, path: str, who: str, body: Any, ok: set[int]) -> None:
        response = await self.callers[who].request(method, path, json=body, repeatable=True)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")

    async def put_skus(self, skus: Sequence[str]) -> None:
        for sku in skus:
            body = {"name": f"Product {sku}", "free_stock": 0}
            await self.call("PUT", f"/v1/skus/{sku}", "ops", body, {200, 201})

    async def start_lines(self, orders: Sequence[tuple[str, str]]) -> None:
        async def start(index: int) -> None:
            order_id, sku = orders[index]
            await self.call("POST", "/v1/backorders", "order", line_body(order_id, sku), {201})

        await bounded(len(orders), start, CONCURRENCY)

    async def order_from_supplier(self, sku: str, quantity: int) -> None:
        """A purchase order due tomorrow: the basis of the date each line is confirmed with
        (a line with nothing inbound starts with the law's option notice instead)."""
        body = {
            "sku": sku,
            "quantity": quantity,
            "expected_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        }
        path = f"/v1/suppliers/{self.supplier}/purchase-orders/po-{sku}"
        await self.call("PUT", path, "supplier", body, {200, 201})

    async def receive(self, sku: str, quantity: int) -> float:
        """Report an arrival; returns the wall-clock time of the 2xx answer."""
        body = {"receipt_id": f"r-{sku}", "sku": sku, "quantity": quantity}
        await self.call("POST", f"/v1/suppliers/{self.supplier}/receipts", "supplier", body, {201})
        return time.time()

    async def until_recorded(self, what: str, skus: Sequence[str], lines: int) -> float:
        query = text("SELECT count(*) FROM lines WHERE sku IN :skus").bindparams(
            bindparam("skus", expanding=True)
        )

        async def done() -> tuple[bool, str]:
            self.stack.check_alive()
            found = await self.stack.count(query, skus=list(skus))
            return found >= lines, f"{found}/{lines} lines in the store"

        return await until(what, done, within=max(120, lines / 5))

    async def until_confirmed(self, what: str, keys_like: str, lines: int) -> float:
        """Until each line has sent its backorder confirmation: the worker has nothing left
        to do for them, and they wait."""
        query = text(
            "SELECT count(*) FROM messages WHERE kind = 'backorder_confirmation' "
            "AND line_key LIKE :keys"
        )

        async def done() -> tuple[bool, str]:
            self.stack.check_alive()
            found = await self.stack.count(query, keys=keys_like)
            return found >= lines, f"{found}/{lines} confirmations sent"

        return await until(what, done, within=max(120, lines / 5))

    async def until_finished(self, what: str, task_queue: str, within: float) -> float:
        async def done() -> tuple[bool, str]:
            self.stack.check_alive()
            left = await self.stack.running(task_queue)
            return left == 0, f"{left} workflows running"

        return await until(what, done, within=within)


async def histories(stack: BenchStack, workflow_ids: Sequence[str]) -> list[WorkflowHistory]:
    found: list[WorkflowHistory] = []

    async def fetch(index: int) -> None:
        handle = stack.client.get_workflow_handle(workflow_ids[index])
        found.append(await handle.fetch_history())

    await bounded(len(workflow_ids), fetch, 20)
    return found


def first_allocation(history: WorkflowHistory) -> float | None:
    for event in history.events:
        signal = event.workflow_execution_signaled_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and signal.signal_name == ALLOCATED.name
        ):
            return event.event_time.ToDatetime(tzinfo=UTC).timestamp()
    return None


async def surge(stack: BenchStack, lines: int, skus: int) -> dict[str, Any]:
    """N lines over K SKUs through the API, each SKU with a purchase order that covers its
    lines; once all are queued and confirmed, one receipt per SKU covers them (not naming the
    order: its lateness would re-date the other SKU's lines mid-run); timed from the first
    start until every line's workflow has finished (shipped), then the histories read for the
    allocation latency (not costed: `BenchStack.end_of_work`)."""
    driver = Driver(stack)
    tag = uuid.uuid4().hex[:6]
    sku_ids = [f"surge-{tag}-{k}" for k in range(skus)]
    orders = [(f"s{tag}-{i:06d}", sku_ids[i % skus]) for i in range(lines)]
    await driver.put_skus(sku_ids)
    per_sku = {sku: sum(1 for _, s in orders if s == sku) for sku in sku_ids}
    for sku, quantity in per_sku.items():
        await driver.order_from_supplier(sku, quantity)
    say(f"surge: starting {lines} lines over {skus} SKUs through the API")
    began = time.monotonic()
    await driver.start_lines(orders)
    await driver.until_recorded("surge: lines queued", sku_ids, lines)
    await driver.until_confirmed("surge: lines confirmed", f"backorder:s{tag}-%", lines)
    say("surge: all wait, confirmed; one receipt per SKU covers them")
    answered: dict[str, float] = {}

    async def receive(index: int) -> None:
        sku = sku_ids[index]
        answered[sku] = await driver.receive(sku, per_sku[sku])

    await bounded(len(sku_ids), receive, len(sku_ids))
    ended = await driver.until_finished(
        "surge: lines shipping", stack.settings.task_queue, within=max(300, lines)
    )
    # Timed and costed, like the floor, from the first start to the last line finished.
    stack.end_of_work()
    seconds = ended - began
    say(f"surge: {lines} lines shipped in {seconds:.1f} s; reading their histories")
    found = await histories(stack, [line_key(o, "1") for o, _ in orders])
    sku_of = {line_key(o, "1"): s for o, s in orders}
    latencies = []
    for history in found:
        allocated = first_allocation(history)
        if allocated is not None:
            latencies.append(allocated - answered[sku_of[history.workflow_id]])
    events = [len(history.events) for history in found]
    return {
        "lines": lines,
        "skus": skus,
        "lines_per_receipt": lines // skus,
        "seconds": round(seconds, 2),
        "per_second": round(lines / seconds, 2),
        "allocation_latency_p50_s": round(percentile(latencies, 0.5), 3),
        "allocation_latency_p99_s": round(percentile(latencies, 0.99), 3),
        "allocation_latency_max_s": round(max(latencies), 3),
        "happy_path_events": {
            "min": min(events),
            "median": statistics.median(events),
            "max": max(events),
        },
    }


async def floor(stack: BenchStack, count: int) -> dict[str, Any]:
    """The floor workflow, started and driven like the surge's lines: every start with the same
    number in flight, then one signal each, timed until the last has finished."""
    tag = uuid.uuid4().hex[:6]
    ids = [f"floor-{tag}-{i:06d}" for i in range(count)]
    say(f"floor: {count} minimal workflows")
    began = time.monotonic()

    async def start(index: int) -> None:
        await stack.client.start_workflow(FLOOR_WORKFLOW, id=ids[index], task_queue=FLOOR_QUEUE)

    await bounded(count, start, CONCURRENCY)

    async def signal(index: int) -> None:
        await stack.client.get_workflow_handle(ids[index]).signal(FLOOR_SIGNAL)

    await bounded(count, signal, 64)  # as many as the receipt fan-out sends at once
    driver = Driver(stack)
    ended = await driver.until_finished("floor: finishing", FLOOR_QUEUE, within=max(300, count))
    seconds = ended - began
    return {
        "workflows": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 2),
    }


async def starts(stack: BenchStack, count: int, repeats: int = 2) -> dict[str, Any]:
    """`POST /v1/backorders` against the Python client's start (one `start_workflow`, no HTTP,
    no store reads), in rounds raw, API, API, raw, repeated `repeats` times, each round of
    `count / (4 * repeats)` starts and begun on a quiet stack; the lines stay waiting (their
    SKU gets no stock). Both sides share the Temporal server, whose pace drifts on a shared
    machine: the mirrored rounds cancel a drift, their repetition averages its noise."""
    driver = Driver(stack)
    tag = uuid.uuid4().hex[:6]
    sku = f"starts-{tag}"
    await driver.put_skus([sku])
    raw_client = Workflows(
        stack.client, task_queue=stack.settings.task_queue, policy=DEFAULT_POLICY
    )
    seconds = {"api": 0.0, "raw": 0.0}
    done = {"api": 0, "raw": 0}
    quarter = max(1, count // (4 * repeats))
    rounds: list[dict[str, Any]] = []
    recorded = 0
    # CPU seconds each process spent while each side's starts ran: on two cores the start
    # paths compete with each other and with the worker already running the first lines.
    spent: dict[str, dict[str, float]] = {"api": {}, "raw": {}}
    for round_number, kind in enumerate(("raw", "api", "api", "raw") * repeats):
        orders = [(f"{kind}{tag}-{round_number}-{i:06d}", sku) for i in range(quarter)]
        # Each round starts on a quiet stack, not behind the previous round's lines.
        await stack.until_quiet("starts: the stack settling")
        say(f"starts: {quarter} through the {'API' if kind == 'api' else 'client'}")
        cpu_before = stack.cpu_seconds()
        began = time.monotonic()
        if kind == "api":
            await driver.start_lines(orders)
        else:

            async def start(index: int, orders: list[tuple[str, str]] = orders) -> None:
                order_id, line_sku = orders[index]
                await raw_client.start_line(
                    BackorderRequest.model_validate(line_body(order_id, line_sku))
                )

            await bounded(quarter, start, CONCURRENCY)
        took = time.monotonic() - began
        seconds[kind] += took
        rounds.append({"side": kind, "per_second": round(quarter / took, 2)})
        for name, total in stack.cpu_seconds().items():
            spent[kind][name] = spent[kind].get(name, 0.0) + total - cpu_before[name]
        done[kind] += quarter
        recorded += quarter
        await driver.until_recorded("starts: lines queued", [sku], recorded)
    api = done["api"] / seconds["api"]
    raw = done["raw"] / seconds["raw"]
    return {
        "starts_each": done["api"],
        "api_per_second": round(api, 2),
        "raw_per_second": round(raw, 2),
        "ratio": round(api / raw, 3),
        "api_cpu_ms_per_start": round(spent["api"]["api"] * 1000 / done["api"], 2),
        "cpu_ms_per_start": {
            kind: {name: round(seconds * 1000 / done[kind], 2) for name, seconds in by.items()}
            for kind, by in spent.items()
        },
        "rounds": rounds,
        "sku": sku,
    }


async def memory(stack: BenchStack, waiting: int) -> dict[str, Any]:
    """Worker RSS once `waiting` lines wait (the API scenario's lines count), started through
    the client 50 at a time over ten SKUs."""
    driver = Driver(stack)
    already = await stack.count("SELECT count(*) FROM lines WHERE waiting")
    tag = uuid.uuid4().hex[:6]
    sku_ids = [f"memory-{tag}-{k}" for k in range(10)]
    await driver.put_skus(sku_ids)
    missing = max(0, waiting - already)
    raw_client = Workflows(
        stack.client, task_queue=stack.settings.task_queue, policy=DEFAULT_POLICY
    )
    say(f"memory: {already} lines wait; starting {missing} more")

    async def start(index: int) -> None:
        body = line_body(f"m{tag}-{index:06d}", sku_ids[index % len(sku_ids)])
        await raw_client.start_line(BackorderRequest.model_validate(body))

    await bounded(missing, start, CONCURRENCY)
    await driver.until_recorded("memory: lines queued", sku_ids, missing)
    # Let the last confirmations finish, then read the worker's memory.
    await asyncio.sleep(5)
    total = await stack.count("SELECT count(*) FROM lines WHERE waiting")
    resident, peak = stack.rss("worker")
    return {
        "waiting_lines": total,
        "worker_rss_mb": round(resident / 2**20, 1),
        "worker_peak_rss_mb": round(peak / 2**20, 1),
    }


async def escalations(stack: BenchStack) -> dict[str, Any]:
    """History events of the longest paths: a VIP line on each channel that no stock ever
    reaches, on a policy whose day lasts half a second, escalated until the policy cancels it."""
    policy = DEFAULT_POLICY.model_copy(update={"day_seconds": 0.5})
    client = Workflows(stack.client, task_queue=stack.settings.task_queue, policy=policy)
    driver = Driver(stack)
    tag = uuid.uuid4().hex[:6]
    sku = f"escalate-{tag}"
    await driver.put_skus([sku])
    channels = ["web", "amazon", "walmart", "ebay", "etsy"]
    ids = {}
    for channel in channels:
        order_id = f"e{tag}-{channel}"
        body = line_body(order_id, sku, tier="vip", channel=channel) | {"unit_price": "180.00"}
        await client.start_line(BackorderRequest.model_validate(body))
        ids[channel] = line_key(order_id, "1")
    say("history: five VIP lines escalate on a half-second policy day (up to 2 minutes)")

    async def all_done() -> tuple[bool, str]:
        finished = 0
        for workflow_id in ids.values():
            described = await stack.client.get_workflow_handle(workflow_id).describe()
            finished += described.status is not None and described.status.name != "RUNNING"
        return finished == len(ids), f"{finished}/{len(ids)} finished"

    try:
        await until("history: escalations", all_done, within=180)
    except TimeoutError as exc:
        say(f"history: {exc}; reporting the lines as they stand")
    found = {}
    for channel, workflow_id in ids.items():
        handle = stack.client.get_workflow_handle(workflow_id)
        history = await handle.fetch_history()
        status = await handle.query(STATUS.name)
        found[channel] = {"events": len(history.events), "ended": status["state"]}
    longest = max(found, key=lambda channel: found[channel]["events"])
    return {"by_channel": found, "longest": {"channel": longest, **found[longest]}}
