"""`backorders demo`: a realistic burst of backorders, driven through the HTTP API only.

It plays every outside actor against a running stack (or an embedded one it starts itself):
operations create a small catalog, the order system backorders N lines and cancels a few,
suppliers deliver stock in several parts that cover most of the demand. It then watches the
lines settle and prints what happened. SKU and order ids carry a run id, so the demo can run
again and again on the same stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from cli.dev import EmbeddedStack, api_url, configure_logging, stop_requested, ui_url
from client.http import NO_RETRY, ApiClient, Retry
from client.http import Tally as RequestTally
from config.settings import Settings
from domain.responses import Health

T = TypeVar("T")

CONCURRENCY = 20
"""Requests in flight at once: a busy order system, not a load test."""
QUIET_SECONDS = 3.0
"""A line still open is settled once it has not changed for this long after its last arrival."""
POLL_SECONDS = 1.0
CANCEL_SHARE = 0.05
SHIP_COMPLETE_SHARE = 0.15
TWO_LINE_ORDER_SHARE = 0.15
VIP_SHARE = 0.1
FINAL_STATES = ("shipped", "cancelled")


@dataclass(frozen=True)
class Product:
    slug: str
    name: str
    price: str
    free_stock: int
    popularity: int
    coverage: float
    """Share of the demand that suppliers deliver: below 1, some lines are left waiting."""


CATALOG = [
    Product("mug", "Stoneware mug, speckled", "14.00", 2, 3, 1.0),
    Product("tee", "Organic cotton tee, M", "24.00", 5, 3, 1.0),
    Product("kettle", "Gooseneck kettle", "59.00", 0, 2, 1.0),
    Product("tote", "Canvas tote", "18.50", 1, 2, 1.0),
    Product("lamp", "Brass desk lamp", "89.00", 0, 1, 0.8),
    Product("chair", "Oak side chair", "149.00", 0, 1, 0.85),
]
CHANNELS = {"web": 5, "amazon": 3, "walmart": 1, "ebay": 1, "etsy": 1}
QUANTITIES = {1: 55, 2: 25, 3: 12, 4: 8}


@dataclass
class SkuPlan:
    sku: str
    product: Product
    supplier: str
    receipts: list[int] = field(default_factory=list)
    """Quantities of the successive deliveries."""
    demand: int = 0


@dataclass
class Plan:
    run_id: str
    skus: dict[str, SkuPlan]
    lines: list[dict[str, Any]]
    cancels: list[tuple[str, str, str]]
    """(sku, order id, line id) of the lines the order system cancels."""


def _pick(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    """`total` cut into at most `parts` positive pieces, unevenly, as deliveries come."""
    parts = min(parts, total)
    if parts <= 0:
        return []
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def make_plan(run_id: str, line_count: int, suppliers: list[str]) -> Plan:
    rng = random.Random(run_id)
    skus = {
        f"demo-{run_id}-{product.slug}": SkuPlan(
            f"demo-{run_id}-{product.slug}", product, suppliers[i % len(suppliers)]
        )
        for i, product in enumerate(CATALOG)
    }
    popularity = {sku: plan.product.popularity for sku, plan in skus.items()}
    now = datetime.now(UTC)
    lines: list[dict[str, Any]] = []
    order_number = 0
    while len(lines) < line_count:
        order_number += 1
        order_id = f"demo-{run_id}-{order_number:05d}"
        two_lines = rng.random() < TWO_LINE_ORDER_SHARE and line_count - len(lines) >= 2
        order_skus = rng.sample(list(skus), 2) if two_lines else [_pick(rng, popularity)]
        customer = {
            "id": f"cust-{rng.randrange(10**6):06d}",
            "email": f"shopper{order_number}@example.com",
            "tier": "vip" if rng.random() < VIP_SHARE else "standard",
        }
        channel = _pick(rng, CHANNELS)
        ordered_at = now - timedelta(minutes=rng.randrange(5, 600))
        policy = "complete" if rng.random() < SHIP_COMPLETE_SHARE else "partial"
        for line_number, sku in enumerate(order_skus, 1):
            quantity: int = _pick(rng, QUANTITIES)
            skus[sku].demand += quantity
            lines.append(
                {
                    "order_id": order_id,
                    "line_id": str(line_number),
                    "sku": sku,
                    "quantity": quantity,
                    "unit_price": skus[sku].product.price,
                    "currency": "USD",
                    "channel": channel,
                    "customer": customer,
                    "ordered_at": ordered_at.isoformat(),
                    "ship_policy": policy,
                }
            )
    for plan in skus.values():
        wanted = math.ceil(plan.demand * plan.product.coverage) - plan.product.free_stock
        plan.receipts = _split(rng, max(0, wanted), rng.randint(3, 4))
    cancelled = rng.sample(lines, max(1, round(line_count * CANCEL_SHARE)))
    cancels = [(line["sku"], line["order_id"], line["line_id"]) for line in cancelled]
    return Plan(run_id, skus, lines, cancels)


@dataclass
class Failure:
    request: str
    status: int | None
    detail: str


DEMO_RETRY = Retry(attempts=6, first_delay=0.5, max_delay=5.0, within=90.0)
"""A 503 says "asking again is safe" and when: the demo asks again, as an order system does."""


class Api:
    """The HTTP API with each actor's token, on one `ApiClient` (its connections, its retries
    and its tally); records every answer it did not expect."""

    def __init__(self, client: ApiClient, settings: Settings) -> None:
        self.client = client
        self.ops = client.as_token(settings.ops_token)
        self.order_system = client.as_token(settings.order_system_token)
        # Operations may act for any supplier: the demo still runs with no supplier tokens.
        tokens = settings.supplier_token_map or {"acme": settings.ops_token}
        self.suppliers = {supplier: client.as_token(token) for supplier, token in tokens.items()}
        self.failures: list[Failure] = []
        self.gate = asyncio.Semaphore(CONCURRENCY)

    async def call(
        self,
        caller: ApiClient,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...],
        json: Any = None,
        params: dict[str, Any] | None = None,
        repeatable: bool = False,
    ) -> httpx.Response | None:
        """The response if its status is one of `expect`, else None (and a failure noted).

        503s with Retry-After are asked again by the client; a `repeatable` request (a read, or
        a write the API makes idempotent) is also sent again when the connection fails."""
        async with self.gate:
            try:
                response = await caller.request(
                    method, path, json=json, params=params, repeatable=repeatable
                )
            except httpx.TransportError as exc:
                self.failures.append(Failure(f"{method} {path}", None, repr(exc)))
                return None
        if response.status_code not in expect:
            self.failures.append(
                Failure(f"{method} {path}", response.status_code, response.text[:300])
            )
            return None
        return response

    async def preflight(self) -> str | None:
        """What stops the demo before it starts (a refused token), found by requests that
        change nothing; None when all is well."""
        supplier, caller = next(iter(self.suppliers.items()))
        probes = [
            ("BACKORDERS_OPS_TOKEN", self.ops, "GET", "/v1/skus/demo-token-probe", None),
            ("BACKORDERS_ORDER_SYSTEM_TOKEN", self.order_system, "GET", "/v1/backorders", None),
            # An unknown SKU is refused (422) after the token is accepted: nothing is written.
            (
                "BACKORDERS_SUPPLIER_TOKENS",
                caller,
                "POST",
                f"/v1/suppliers/{supplier}/receipts",
                {"receipt_id": "demo-token-probe", "sku": "demo-token-probe", "quantity": 1},
            ),
        ]
        for setting, who, method, path, body in probes:
            try:
                response = await who.request(method, path, json=body, repeatable=True)
            except httpx.TransportError as exc:
                return f"the API did not answer {method} {path}: {exc!r}"
            if response.status_code in (401, 403):
                return (
                    f"the API refused the token of {setting} ({response.status_code}): "
                    "give the demo the stack's tokens"
                )
        return None


@dataclass
class Tally:
    """What the burst sent and what the API answered."""

    started: list[str] = field(default_factory=list)
    """Keys (`order/line`) of the lines the API accepted: the ones to watch."""
    receipts: int = 0
    units_received: int = 0
    cancels_too_late: int = 0
    skus_done: set[str] = field(default_factory=set)
    """SKUs whose deliveries and cancellations have all been answered: nothing more comes."""


async def create_catalog(api: Api, plan: Plan) -> None:
    async def put(sku: SkuPlan) -> None:
        body = {"name": sku.product.name, "free_stock": sku.product.free_stock, "substitutes": []}
        await api.call(api.ops, "PUT", f"/v1/skus/{sku.sku}", json=body, expect=(200, 201))

    await asyncio.gather(*(put(sku) for sku in plan.skus.values()))


async def start_lines(api: Api, plan: Plan, tally: Tally, advance: Callable[[], None]) -> None:
    async def start(line: dict[str, Any]) -> None:
        response = await api.call(
            api.order_system,
            "POST",
            "/v1/backorders",
            json=line,
            expect=(200, 201),
            repeatable=True,  # the same line again is answered 200, not started twice
        )
        if response is not None:
            tally.started.append(f"{line['order_id']}/{line['line_id']}")
        advance()

    await asyncio.gather(*(start(line) for line in plan.lines))


async def deliver(
    api: Api, plan: Plan, sku: SkuPlan, tally: Tally, advance: Callable[[], None]
) -> None:
    """One SKU's arrivals in parts, with its cancellations before and between them."""
    rng = random.Random(f"{plan.run_id}:{sku.sku}")
    cancels = [(order, line) for s, order, line in plan.cancels if s == sku.sku]
    early, late = (cancels[::2], cancels[1::2]) if sku.receipts else (cancels, [])

    async def cancel(order_id: str, line_id: str) -> None:
        path = f"/v1/backorders/{order_id}/{line_id}/cancel"
        body = {"reason": "customer changed their mind"}
        # 202: accepted, the refund still under way (a busy machine); 409: the line is final,
        # either shipped in full before the cancel reached it, or cancelled by this very cancel
        # when a 503 ("asking again is safe") came after it took effect. Fair outcomes all.
        response = await api.call(
            api.order_system, "POST", path, json=body, expect=(200, 202, 409), repeatable=True
        )
        if response is not None and response.status_code == 409:
            line = await api.call(
                api.order_system,
                "GET",
                f"/v1/backorders/{order_id}/{line_id}",
                expect=(200,),
                repeatable=True,
            )
            if line is not None and line.json()["state"] != "cancelled":
                tally.cancels_too_late += 1
        advance()

    # Customers cancel whenever they like: the deliveries do not wait for the answers.
    async with asyncio.TaskGroup() as cancelling:
        for line in early:
            cancelling.create_task(cancel(*line))
        for number, quantity in enumerate(sku.receipts, 1):
            await asyncio.sleep(rng.uniform(0.3, 1.0))  # a truck, not a batch file
            body = {"receipt_id": f"{sku.sku}-r{number}", "sku": sku.sku, "quantity": quantity}
            path = f"/v1/suppliers/{sku.supplier}/receipts"
            # A receipt id reported again is counted once: safe to repeat.
            answer = await api.call(
                api.suppliers[sku.supplier],
                "POST",
                path,
                json=body,
                expect=(200, 201),
                repeatable=True,
            )
            if answer is not None:
                tally.receipts += 1
                tally.units_received += quantity
            advance()
            if number == min(2, len(sku.receipts)):
                for line in late:
                    cancelling.create_task(cancel(*line))
    tally.skus_done.add(sku.sku)


@dataclass
class Watch:
    """The latest view of every line, and since when each has not changed."""

    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)

    def see(self, line: dict[str, Any], now: float) -> None:
        key = f"{line['order_id']}/{line['line_id']}"
        fingerprint = (
            line["state"],
            line["allocated_quantity"],
            line["shipped_quantity"],
            len(line["messages"]),
            len(line["shipments"]),
            len(line["refunds"]),
        )
        if self.fingerprints.get(key) != fingerprint:
            self.fingerprints[key] = fingerprint
            self.changed_at[key] = now
        self.lines[key] = line

    def settled(self, key: str, tally: Tally, now: float) -> bool:
        line = self.lines.get(key)
        if line is None:
            return False  # accepted, not yet recorded by its workflow
        if line["state"] in FINAL_STATES:
            return True
        held = line["allocated_quantity"] - line["shipped_quantity"]
        complete = line["ship_policy"] == "complete"
        # Units held for a partial line, or a complete line's last units, are about to ship.
        about_to_ship = held > 0 and (
            not complete or line["allocated_quantity"] >= line["quantity"]
        )
        return (
            line["sku"] in tally.skus_done
            and line["state"] != "received"
            and not about_to_ship
            and now - self.changed_at[key] >= QUIET_SECONDS
        )


async def read_lines(api: Api, sku: str) -> list[dict[str, Any]] | None:
    """Every line of one SKU, a page at a time; None when the API did not answer."""
    lines: list[dict[str, Any]] = []
    page = 1000
    while True:
        params = {"sku": sku, "limit": page, "offset": len(lines)}
        response = await api.call(
            api.order_system, "GET", "/v1/backorders", params=params, expect=(200,)
        )
        if response is None:
            return None
        batch: list[dict[str, Any]] = response.json()
        lines += batch
        if len(batch) < page:
            return lines


async def watch_until_settled(
    api: Api,
    plan: Plan,
    tally: Tally,
    deadline: float,
    report: Callable[[int, Counter[str]], None],
) -> tuple[Watch, bool]:
    """Poll each SKU's lines until all are settled; returns the view and whether it timed out."""
    watch = Watch()
    keys = tally.started
    while True:
        now = time.monotonic()
        pages = await asyncio.gather(*(read_lines(api, sku) for sku in plan.skus))
        for page in pages:
            for line in page or []:
                watch.see(line, now)
        settled = sum(watch.settled(key, tally, now) for key in keys)
        report(settled, outcomes(list(watch.lines.values())))
        if settled == len(keys):
            return watch, False
        if now > deadline:
            return watch, True
        await asyncio.sleep(POLL_SECONDS)


def outcomes(lines: list[dict[str, Any]]) -> Counter[str]:
    """Lines by outcome: shipped, partially shipped, waiting (anything else open), cancelled."""
    named = ("shipped", "partially_shipped", "cancelled")
    return Counter(line["state"] if line["state"] in named else "waiting" for line in lines)


def summary(plan: Plan, tally: Tally, watch: Watch, elapsed: float) -> Table:
    lines = list(watch.lines.values())
    counts = outcomes(lines)
    refunds = [refund for line in lines for refund in line["refunds"]]
    refunded = sum((Decimal(refund["amount"]) for refund in refunds), Decimal(0))
    orders = len({line["order_id"] for line in plan.lines})
    units = sum(line["quantity"] for line in plan.lines)
    units_shipped = sum(line["shipped_quantity"] for line in lines)
    messages = sum(len(line["messages"]) for line in lines)
    shipments = sum(len(line["shipments"]) for line in lines)
    table = Table(title=f"backorders demo {plan.run_id}")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("")
    started = len(tally.started)
    table.add_row("Lines started", f"{started}", f"{orders} orders, {len(plan.skus)} SKUs")
    table.add_row("Shipped", f"{counts['shipped']}", "in full")
    table.add_row("Partially shipped", f"{counts['partially_shipped']}", "the rest on backorder")
    table.add_row("Waiting", f"{counts['waiting']}", "for stock")
    table.add_row(
        "Cancelled", f"{counts['cancelled']}", f"{tally.cancels_too_late} cancels came too late"
    )
    if unseen := started - len(lines):
        table.add_row("Not recorded", f"{unseen}", "accepted, not yet in the store")
    table.add_row("Refunds", f"{len(refunds)}", f"{refunded:.2f} USD")
    table.add_row("Messages sent", f"{messages}", "to customers")
    table.add_row("Shipments", f"{shipments}", f"{units_shipped} of {units} units ordered")
    table.add_row("Receipts", f"{tally.receipts}", f"{tally.units_received} units, in parts")
    table.add_row("Elapsed", f"{elapsed:.1f} s", f"{started / elapsed:.1f} lines/s")
    return table


def requests_table(tally: RequestTally, failures: int) -> Table:
    """The demo's requests: how many were asked again after a 503 and answered in the end,
    and how many failed (no answer, or not the one expected)."""
    table = Table(title="requests")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("")
    why = ", ".join(f"{reason} x{count}" for reason, count in tally.reasons.items()) or "-"
    table.add_row("Sent", f"{tally.sent}", "")
    table.add_row("Retried", f"{tally.retried}", f"succeeded when asked again ({why})")
    table.add_row("Failed", f"{failures}", "no answer, or not the one expected")
    return table


def inspect_hint(settings: Settings, watch: Watch) -> list[str]:
    """Where to see the workflows, with a filter that finds the lines still waiting."""
    open_lines = Counter(
        line["sku"] for line in watch.lines.values() if line["state"] not in FINAL_STATES
    )
    if open_lines:
        sku = open_lines.most_common(1)[0][0]
        query = f'BackorderSku="{sku}" AND BackorderState!="shipped"'
    else:
        sku = next(iter(watch.lines.values()))["sku"] if watch.lines else "mug"
        query = f'BackorderSku="{sku}"'
    workflows = f"{ui_url(settings)}/namespaces/{settings.temporal_namespace}/workflows"
    return [
        f"Inspect them in the Temporal UI: {workflows}",
        f"  for example the lines of {sku} not shipped yet, with the filter:",
        f"  {query}",
        f"  {workflows}?query={quote(query)}",
    ]


async def run_burst(
    api: Api, settings: Settings, lines: int, wait_seconds: float, console: Console
) -> int:
    """Drive one burst and print its summary; the exit code of the demo."""
    problem = await api.preflight()
    if problem:
        console.print(f"[red]{problem}[/]")
        return 2
    suppliers = list(api.suppliers)
    plan = make_plan(uuid.uuid4().hex[:6], lines, suppliers)
    tally = Tally()
    began = time.monotonic()
    console.print(
        f"run [bold]{plan.run_id}[/]: {len(plan.lines)} backordered lines over "
        f"{len(plan.skus)} SKUs, {len(plan.cancels)} cancellations, "
        f"{sum(len(s.receipts) for s in plan.skus.values())} deliveries"
    )
    # The note gives way (cut short) on a narrow terminal, not the bars.
    note = Column(no_wrap=True, overflow="ellipsis", max_width=max(12, console.width - 62))
    progress = Progress(
        TextColumn("{task.description:<17}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}", table_column=note),
        console=console,
    )
    with progress:
        sending = progress.add_task("backorders", total=len(plan.lines), note="")
        arriving = progress.add_task(
            "arrivals, cancels",
            total=len(plan.cancels) + sum(len(s.receipts) for s in plan.skus.values()),
            note="",
        )
        settling = progress.add_task("settled lines", total=len(plan.lines), note="")

        def report(settled: int, counts: Counter[str]) -> None:
            shipped, cancelled = counts["shipped"], counts["cancelled"]
            still_open = counts.total() - shipped - cancelled
            text = f"{shipped} shipped, {cancelled} cancelled, {still_open} open"
            progress.update(settling, completed=settled, note=text)

        await create_catalog(api, plan)
        await start_lines(api, plan, tally, lambda: progress.advance(sending))
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(
                watch_until_settled(api, plan, tally, began + wait_seconds, report)
            )
            for sku in plan.skus.values():
                group.create_task(
                    deliver(api, plan, sku, tally, lambda: progress.advance(arriving))
                )
        watch, timed_out = watcher.result()
    elapsed = time.monotonic() - began
    console.print(summary(plan, tally, watch, elapsed))
    console.print(requests_table(api.client.tally, len(api.failures)))
    for text in inspect_hint(settings, watch):
        console.print(text, markup=False)
    code = 0
    if timed_out:
        console.print(f"[red]timed out after {wait_seconds:.0f} s[/] with lines still moving")
        code = 1
    if api.failures:
        console.print(f"[red]{len(api.failures)} requests failed unexpectedly[/], the first:")
        for failure in api.failures[:5]:
            console.print(f"  {failure.request}: {failure.status} {failure.detail}", markup=False)
        code = 1
    return code


HEALTH_PATIENCE_SECONDS = 10.0
"""How long the demo asks again while a stack answers unhealthy: a busy Temporal server can miss
one health check (its 3 s deadline) and answer the next."""


async def stack_answers(url: str, *, patience: float = HEALTH_PATIENCE_SECONDS) -> Health | None:
    """The health of the stack answering at `url` (asked again each second for up to `patience`
    seconds while it answers unhealthy), or None if nothing answers there."""
    deadline = time.monotonic() + patience
    async with ApiClient(url, retry=NO_RETRY, timeout=3) as api:
        while True:
            try:
                health = await api.health()
            except (httpx.TransportError, ValueError):
                return None
            if health.status == "ok" or time.monotonic() >= deadline:
                return health
            await asyncio.sleep(1)


def unhealthy_parts(health: Health) -> str:
    """The parts that did not answer, as the stack named them."""
    parts = {"store": health.store, "temporal": health.temporal}
    return ", ".join(f"{name}: {state}" for name, state in parts.items() if state != "ok")


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """The result of `work`, or None if SIGINT or SIGTERM came first (and `work` is cancelled)."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def run_demo(
    settings: Settings,
    *,
    lines: int,
    api: str | None,
    keep: bool,
    wait_seconds: float,
    fast: bool = False,
) -> int:
    # The progress bar is the demo's output: the worker speaks only when something is wrong.
    configure_logging(logging.WARNING)
    # Long lines (URLs, the filter) stay whole when the output is a file or a pipe.
    console = Console(soft_wrap=True)
    url = (api or api_url(settings)).rstrip("/")
    with stop_requested() as stop:
        found = await stack_answers(url)
        if found is not None and found.status != "ok":
            console.print(
                f"[red]the stack at {url} answers but is not healthy[/] (GET /healthz, "
                f"{unhealthy_parts(found)}, for {HEALTH_PATIENCE_SECONDS:g} s)"
            )
            return 2
        stack: EmbeddedStack | None = None
        if fast and found is not None and api is None:
            console.print(
                f"[red]--fast plays on policy days of a few seconds, and a stack already answers "
                f"at {url}[/] on its own policy: stop it, so that the demo starts one with "
                "the fast policy (or give --api the URL of a stack you started with "
                "BACKORDERS_POLICY_FILE set to that policy)"
            )
            return 2
        if fast and found is None:
            settings = with_fast_policy(settings)
        if found is None:
            if api is not None:
                console.print(f"[red]nothing answers at {url}[/]: start it with `backorders dev`")
                return 2
            console.print(f"no stack answers at {url}: starting the embedded stack in this process")
            stack = await EmbeddedStack.start(settings)
        try:
            async with ApiClient(url, retry=DEMO_RETRY, timeout=60) as client:
                play = (
                    run_fast(Api(client, settings), settings, console)
                    if fast
                    else run_burst(Api(client, settings), settings, lines, wait_seconds, console)
                )
                code = await until_stopped(play, stop)
            if code is None:
                console.print("interrupted")
                return 130
            if stack is not None and keep:
                console.print(
                    f"The stack keeps running: API {api_url(settings)}, UI {ui_url(settings)}. "
                    "Ctrl-C stops it."
                )
                await stop.wait()
            return code
        finally:
            if stack is not None:
                console.print("stopping the embedded stack ...")
                await stack.stop()


def with_fast_policy(settings: Settings) -> Settings:
    """The settings of a stack on the fast demo's policy, written into its state folder."""
    from cli.fast_demo import fast_policy

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / "demo-fast-policy.json"
    path.write_text(json.dumps(fast_policy(), indent=2))
    # Surveys are due a few seconds after shipping: swept every second, not every five minutes.
    return settings.model_copy(update={"policy_file": path, "survey_sweep_seconds": 1})


async def run_fast(api: Api, settings: Settings, console: Console) -> int:
    """Play the customer's side and say where to look at it; the exit code of the demo."""
    from cli.fast_demo import FAST_DAY_SECONDS, play_customer_side

    problem = await api.preflight()
    if problem:
        console.print(f"[red]{problem}[/]")
        return 2
    run_id = uuid.uuid4().hex[:6]
    console.print(
        f"run [bold]{run_id}[/]: the customer's side, live; a policy day lasts "
        f"{FAST_DAY_SECONDS:.0f} s"
    )
    played = await play_customer_side(api, console, run_id)
    table = Table(title=f"backorders demo --fast {run_id}")
    table.add_column("moment")
    table.add_column("customers")
    for moment, roles in played.moments.items():
        table.add_row(moment, ", ".join(roles))
    console.print(table)
    console.print("Open a customer's status page (no account: the link is signed):")
    for role, link in sorted(played.status_links.items()):
        console.print(f"  {role}: {link}", markup=False)
    workflows = f"{ui_url(settings)}/namespaces/{settings.temporal_namespace}/workflows"
    console.print(f"Their workflows in the Temporal UI: {workflows}", markup=False)
    for problem in played.problems:
        console.print(f"[red]{problem}[/]")
    if played.missing:
        console.print(f"[red]not seen: {', '.join(played.missing)}[/]")
    return 1 if played.problems or played.missing else 0
