"""Helpers for chaos tests: the worker as a process of its own, requests an order system retries,
and the records checker.

The checker compares what left the service (the simulators' `GET /{service}/requests`) with the
store's record of it, line by line, and returns the problems it finds (empty when fine):

- every line is final (shipped or cancelled) and its quantities add up: allocated minus
  released == shipped == the net of its allocation rows == what the carrier got for it;
- the carrier: no idempotency key twice, each shipment the store records was sent once under
  its key with the same quantity, none was sent that the store does not record, and a line's
  shipments are numbered 1..n without gaps;
- payments: one cancellation refund (`{line}:refund`) per cancelled line, none for a shipped
  line, and what a cancelled line got back in all == its unit price x the units that did not ship;
- notifications: no key twice, one message per (kind, event) of a line, exactly one `shipped` for
  a shipped line and one `cancelled_refunded` for a cancelled one, at most one confirmation, one
  shipment message per shipment, naming it; the store records each message the service got;
- the store audit (`store.audit.broken_rules`) of every SKU the lines use is empty.

`find_problems` is a pure function of the records and a `StoreFacts` snapshot, so a test can
hand it doctored records and see that it objects.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select
from temporalio.client import Client

from config.settings import Settings
from domain.line.messages import MessageKind
from domain.line.payment import Payment
from domain.line.state import LineState
from store.audit import broken_rules
from store.db import Database
from store.tables import AllocationRow, LineRow, MessageRow, RefundRow, ShipmentRow
from tests.support.poll import eventually

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RECORDED_SERVICES = ("carrier", "payments", "notifications")

# ---- the worker as a process of its own ----------------------------------------------------


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a standalone worker (`python -m worker.main`) that serves the same
    stack as `settings`: Temporal, task queue, store, outside services, links.

    Nothing of the developer's own `BACKORDERS_*` settings leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    values: dict[str, str | None] = {
        "STATE_DIR": str(settings.state_dir),
        "TEMPORAL_ADDRESS": settings.temporal_target,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TASK_QUEUE": settings.task_queue,
        "DATABASE_URL": settings.store_url,
        "SIMULATOR_PORT": str(settings.simulator_port),
        "HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
        # Empty serves no SDK metrics: the default port may be taken by another stack.
        "SDK_METRICS_ADDRESS": settings.sdk_metrics_address or "",
        "WORKFLOW_SANDBOX": str(settings.workflow_sandbox).lower(),
        "API_HOST": settings.api_host,
        "API_PORT": str(settings.api_port),
        "PUBLIC_URL": settings.public_url,
        "SIGNING_KEY": settings.signing_key,
        "SERVICE_TOKEN": settings.service_token,
        "POLICY_FILE": str(settings.policy_file) if settings.policy_file else None,
        "CODEC_KEYS": settings.codec_keys,
        "CODEC_KEY_ID": settings.codec_key_id,
        "CARRIER_URL": settings.carrier_url,
        "PAYMENTS_URL": settings.payments_url,
        "NOTIFICATIONS_URL": settings.notifications_url,
        "STOREFRONT_URL": settings.storefront_url,
    }
    env |= {f"BACKORDERS_{name}": value for name, value in values.items() if value is not None}
    env["PYTHONUNBUFFERED"] = "1"
    return env


READY_LINE = "worker polling task queue"
"""What `worker.main.run_worker` logs once its worker is built and about to poll."""


@dataclass
class WorkerProcess:
    """`python -m worker.main` for one stack, each run logging to its own file in `log_dir`."""

    settings: Settings
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.logs.append(self.log_dir / f"worker-{len(self.logs) + 1}.log")
        with self.logs[-1].open("wb") as log:
            # Popen returns at once; `wait_ready` polls the log. Its own session: a Ctrl-C
            # of the test run does not reach it, `stop` does.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.main"],
                cwd=PROJECT_ROOT,
                env=worker_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until the worker logs that it polls its task queue; fails with its log if it exits."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None, "not started"
            if READY_LINE in self.logs[-1].read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)
        raise AssertionError(f"the worker was not ready within {within} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def kill(self) -> None:
        """`kill -9`: no graceful shutdown, activities in flight are cut off mid-call."""
        assert self.process is not None and self.process.poll() is None, "not running"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Ctrl-C (the worker finishes what it can), then kill if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for log in self.logs:
            # Without the HTTP client's line per request: they drown what went wrong.
            text = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if "httpx HTTP Request" not in line
            ]
            parts.append(f"---- {log.name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


# ---- requests an order system retries --------------------------------------------------------


@dataclass
class Retries:
    """How often requests had to be asked again, and why (status code or error type)."""

    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


async def send_until_answered(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    accept: Collection[int],
    what: str,
    within: float = 90.0,
    retries: Retries | None = None,
) -> httpx.Response:
    """Send until the answer is one of `accept`, as an order system does: a transport error or
    a 5xx is asked again with the same body (safe: every write is idempotent by its ids).
    Anything else, or no acceptable answer within `within` seconds, fails naming `what`."""
    deadline = time.monotonic() + within
    last = "nothing"
    while time.monotonic() < deadline:
        try:
            response = await send()
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
            reason = type(exc).__name__
        else:
            if response.status_code in accept:
                return response
            last = f"{response.status_code} {response.text[:300]}"
            if response.status_code < 500:
                raise AssertionError(f"{what}: answered {last}")
            reason = str(response.status_code)
        if retries is not None:
            retries.reasons[reason] += 1
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: no answer in {accept} within {within} s; last: {last}")


# ---- the end of a surge -------------------------------------------------------------------------


def open_lines(db: Database, keys: Collection[str]) -> list[str]:
    """The lines among `keys` not final in the store, each described."""
    with db.reading() as session:
        rows = {
            row.key: row
            for row in session.exec(select(LineRow).where(col(LineRow.key).in_(list(keys))))
        }
    described = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            described.append(f"{key}: not in the store")
        elif row.state not in (LineState.SHIPPED, LineState.CANCELLED):
            described.append(
                f"{key}: {row.state}, allocated {row.allocated_quantity}, shipped "
                f"{row.shipped_quantity} of {row.quantity}"
            )
    return described


async def settle(
    temporal: Client,
    db: Database,
    keys: Collection[str],
    *,
    within: float,
    task_queue: str | None = None,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Until every line of `keys` is final in the store and its workflow has ended (every
    effect done); with `task_queue`, until no workflow of that queue runs at all. Fails listing
    what is still open, and what `explain` adds (logs, pending activities)."""
    deadline = time.monotonic() + within

    async def failing(what: str) -> AssertionError:
        more = await explain() if explain is not None else ""
        return AssertionError(f"{what} within {within} s\n{more}")

    try:
        await eventually(
            lambda: asyncio.to_thread(open_lines, db, keys),
            lambda pending: not pending,
            within=within,
            every=0.3,
            what="every line final in the store",
        )
        left = max(1.0, deadline - time.monotonic())
        handles = [temporal.get_workflow_handle(key) for key in keys]
        await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in handles)), left)
        if task_queue is not None:
            running = f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"'
            await eventually(
                lambda: temporal.count_workflows(running),
                lambda found: found.count == 0,
                within=max(1.0, deadline - time.monotonic()),
                every=0.3,
                what=f"no workflow running on {task_queue}",
            )
    except AssertionError as exc:
        pending = await asyncio.to_thread(open_lines, db, keys)
        raise await failing(f"{exc}; still open: {pending}") from None
    except TimeoutError:
        raise await failing("the lines' workflows did not all end") from None


# ---- the records checker ---------------------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    key: str
    sku: str
    quantity: int
    unit_price: Decimal
    state: str
    waiting: bool
    allocated: int
    shipped: int
    released: int
    net_allocated: int
    """The sum of the line's allocation rows (returns are negative)."""
    payment: Payment | None = None
    """The line's money at start, for a line with payment terms."""


@dataclass(frozen=True)
class EffectFacts:
    """A shipment, refund or message as the store recorded it."""

    key: str
    line_key: str
    quantity: int = 0
    amount: Decimal = Decimal(0)
    kind: str = ""
    sequence: int = 0
    carrier_shipment_id: str = ""


@dataclass
class StoreFacts:
    lines: dict[str, LineFacts]
    shipments: list[EffectFacts]
    refunds: list[EffectFacts]
    messages: list[EffectFacts]
    audit: dict[str, list[str]]
    """SKU -> `broken_rules` of that SKU."""


def read_store(db: Database, line_keys: Collection[str] | None = None) -> StoreFacts:
    """The store's record of the given lines (every line when None)."""
    with db.reading() as session:
        query = select(LineRow)
        if line_keys is not None:
            query = query.where(col(LineRow.key).in_(list(line_keys)))
        rows = session.exec(query).all()
        keys = [row.key for row in rows]
        net: defaultdict[str, int] = defaultdict(int)
        for allocation in session.exec(
            select(AllocationRow).where(col(AllocationRow.line_key).in_(keys))
        ).all():
            net[allocation.line_key] += allocation.quantity
        shipments = [
            EffectFacts(
                key=s.idempotency_key,
                line_key=s.line_key,
                quantity=s.quantity,
                sequence=s.sequence,
                carrier_shipment_id=s.carrier_shipment_id,
            )
            for s in session.exec(select(ShipmentRow).where(col(ShipmentRow.line_key).in_(keys)))
        ]
        refunds = [
            EffectFacts(
                key=r.idempotency_key,
                line_key=r.line_key,
                quantity=r.quantity,
                amount=Decimal(r.amount),
            )
            for r in session.exec(select(RefundRow).where(col(RefundRow.line_key).in_(keys)))
        ]
        messages = [
            EffectFacts(key=m.idempotency_key, line_key=m.line_key, kind=m.kind)
            for m in session.exec(select(MessageRow).where(col(MessageRow.line_key).in_(keys)))
        ]
    lines = {
        row.key: LineFacts(
            key=row.key,
            sku=row.sku,
            quantity=row.quantity,
            unit_price=Decimal(row.unit_price),
            state=row.state,
            waiting=row.waiting,
            allocated=row.allocated_quantity,
            shipped=row.shipped_quantity,
            released=row.released_quantity,
            net_allocated=net[row.key],
            payment=Payment.model_validate_json(row.payment_json) if row.payment_json else None,
        )
        for row in rows
    }
    skus = sorted({line.sku for line in lines.values()})
    audit = {sku: broken_rules(db, sku) for sku in skus}
    return StoreFacts(lines, shipments, refunds, messages, audit)


async def fetch_records(simulators_url: str) -> dict[str, list[dict[str, Any]]]:
    """What each outside service accepted, in order (`GET /{service}/requests`)."""
    async with httpx.AsyncClient(base_url=simulators_url, timeout=30) as http:
        records = {}
        for service in RECORDED_SERVICES:
            response = await http.get(f"/{service}/requests")
            response.raise_for_status()
            records[service] = response.json()
    return records


def by_reference(rows: Sequence[Mapping[str, Any]]) -> defaultdict[str, list[Mapping[str, Any]]]:
    """A service's records by the line (or order) they are for."""
    grouped: defaultdict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["body"].get("reference", ""))].append(row)
    return grouped


def repeated_keys(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Idempotency keys a service recorded more than once, and how often."""
    counts = Counter(str(row["idempotency_key"]) for row in rows)
    return {key: n for key, n in counts.items() if n > 1}


def _keys_twice(service: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"{service}: idempotency key {key} recorded {n} times"
        for key, n in repeated_keys(rows).items()
    ]


def find_problems(
    records: Mapping[str, Sequence[Mapping[str, Any]]], store: StoreFacts
) -> list[str]:
    """Every way the records and the store disagree with "exactly once" (see the module's
    docstring); empty when fine. Only the lines in `store` are judged."""
    problems: list[str] = []
    for service in RECORDED_SERVICES:
        problems += _keys_twice(service, records.get(service, []))
    carrier = by_reference(records.get("carrier", []))
    payments = by_reference(records.get("payments", []))
    notifications = by_reference(records.get("notifications", []))
    order_shipments = {
        str(row["response"].get("shipment_id")): row
        for reference, rows in carrier.items()
        if reference.startswith("order:")
        for row in rows
    }
    shipments = _group(store.shipments)
    refunds = _group(store.refunds)
    messages = _group(store.messages)
    for key in sorted(store.lines):
        line = store.lines[key]
        problems += _line_problems(line)
        problems += _carrier_problems(line, carrier.get(key, []), shipments[key], order_shipments)
        if line.payment is None:
            problems += _payment_problems(line, payments.get(key, []))
        else:
            problems += _money_problems(line, line.payment, payments.get(key, []), shipments[key])
        problems += _refunds_recorded(line, payments.get(key, []), refunds[key])
        problems += _message_problems(
            line, notifications.get(key, []), messages[key], shipments[key]
        )
    for sku, broken in sorted(store.audit.items()):
        problems += [f"store audit of {sku}: {problem}" for problem in broken]
    return problems


def _group(effects: Sequence[EffectFacts]) -> defaultdict[str, list[EffectFacts]]:
    grouped: defaultdict[str, list[EffectFacts]] = defaultdict(list)
    for effect in effects:
        grouped[effect.line_key].append(effect)
    return grouped


def _line_problems(line: LineFacts) -> list[str]:
    key, problems = line.key, []
    if line.state not in (LineState.SHIPPED, LineState.CANCELLED) or line.waiting:
        problems.append(
            f"{key}: not final: {line.state}, waiting={line.waiting}, allocated "
            f"{line.allocated}, shipped {line.shipped} of {line.quantity}"
        )
        return problems
    if line.state == LineState.SHIPPED and line.shipped != line.quantity:
        problems.append(f"{key}: shipped, but {line.shipped} units shipped of {line.quantity}")
    if line.state == LineState.CANCELLED and line.shipped >= line.quantity:
        problems.append(f"{key}: cancelled, but all {line.quantity} units shipped")
    if line.allocated - line.released != line.shipped:
        problems.append(
            f"{key}: allocated {line.allocated} - released {line.released} != shipped "
            f"{line.shipped}: units held by a final line"
        )
    if line.net_allocated != line.shipped:
        problems.append(
            f"{key}: its allocation rows add up to {line.net_allocated}, shipped {line.shipped}"
        )
    return problems


def _carrier_problems(
    line: LineFacts,
    sent: Sequence[Mapping[str, Any]],
    recorded: Sequence[EffectFacts],
    order_shipments: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    key, problems = line.key, []
    by_key = {str(row["idempotency_key"]): row for row in sent}
    own = [s for s in recorded if s.carrier_shipment_id not in order_shipments]
    for shipment in own:
        row = by_key.get(shipment.key)
        if row is None:
            problems.append(
                f"{key}: the store records shipment {shipment.key} ({shipment.quantity} units) "
                f"that the carrier never got"
            )
        elif row["body"].get("quantity") != shipment.quantity:
            problems.append(
                f"{key}: shipment {shipment.key} is {shipment.quantity} units in the store, "
                f"{row['body'].get('quantity')} at the carrier"
            )
    unrecorded = sorted(set(by_key) - {s.key for s in own})
    for extra in unrecorded:
        problems.append(
            f"{key}: the carrier got shipment {extra} "
            f"({by_key[extra]['body'].get('quantity')} units) that the store does not record"
        )
    carried = sum(int(row["body"].get("quantity", 0)) for row in sent) + sum(
        s.quantity for s in recorded if s.carrier_shipment_id in order_shipments
    )
    if carried != line.shipped:
        problems.append(
            f"{key}: the carrier got {carried} units for it in {len(sent)} shipments "
            f"({sorted(by_key)}), the store says {line.shipped} shipped"
        )
    sequences = sorted(s.sequence for s in recorded)
    if sequences != list(range(1, len(recorded) + 1)):
        problems.append(f"{key}: shipment sequences {sequences} are not 1..{len(recorded)}")
    return problems


def _payment_problems(line: LineFacts, sent: Sequence[Mapping[str, Any]]) -> list[str]:
    """A line paid in full at order: one cancellation refund for what did not ship."""
    key, problems = line.key, []
    cancel_key = f"{key}:refund"
    cancel_refunds = [row for row in sent if row["idempotency_key"] == cancel_key]
    unshipped = line.quantity - line.shipped
    if line.state == LineState.CANCELLED:
        if len(cancel_refunds) != 1:
            problems.append(
                f"{key}: cancelled with {unshipped} units unshipped, and payments got "
                f"{len(cancel_refunds)} cancellation refunds: {_describe(sent)}"
            )
        total = sum((Decimal(str(row["body"].get("amount", "0"))) for row in sent), Decimal(0))
        owed = line.unit_price * unshipped
        if cancel_refunds and total != owed:
            problems.append(
                f"{key}: refunded {total} in all, owed {owed} "
                f"({unshipped} x {line.unit_price}): {_describe(sent)}"
            )
    elif cancel_refunds:
        problems.append(f"{key}: {line.state}, yet refunded as cancelled: {_describe(sent)}")
    return problems


def _money_problems(
    line: LineFacts,
    payment: Payment,
    sent: Sequence[Mapping[str, Any]],
    shipments: Sequence[EffectFacts],
) -> list[str]:
    """A line with payment terms: one capture per shipment and none without one, no hold voided
    twice, a cancel that gives up what was still held, and the money to the cent: charged at
    order plus captured, less refunded, is the value of what shipped (nothing else kept)."""
    key, problems = line.key, []
    paths = defaultdict(list)
    for row in sent:
        paths[str(row["path"])].append(row)
    shipped = {shipment.sequence for shipment in shipments}
    for capture in paths["/captures"]:
        sequence = int(str(capture["idempotency_key"]).rsplit(":", 1)[-1])
        if sequence not in shipped:
            problems.append(f"{key}: captured for shipment {sequence}, which never left")
    captured = Decimal(payment.captured) + sum(
        (Decimal(str(row["body"]["amount"])) for row in paths["/captures"]), Decimal(0)
    )
    refunded = sum((Decimal(str(row["body"]["amount"])) for row in paths["/refunds"]), Decimal(0))
    value = min(line.unit_price * line.shipped, Decimal(payment.amount))
    if captured - refunded != value:
        problems.append(
            f"{key}: charged {payment.captured} at order + captured, less refunded = "
            f"{captured - refunded}, but what shipped is worth {value}: {_describe(sent)}"
        )
    if refunded > captured:
        problems.append(f"{key}: refunded {refunded}, more than was ever charged ({captured})")
    voids = Counter(str(row["body"]["authorization_id"]) for row in paths["/voids"])
    problems += [f"{key}: hold {hold} voided {n} times" for hold, n in voids.items() if n > 1]
    given_up = [
        row for row in paths["/voids"] if not str(row["body"]["reason"]).startswith("replaced")
    ]
    held_at_cancel = captured < Decimal(payment.amount)
    if line.state == LineState.CANCELLED and held_at_cancel and len(given_up) != 1:
        problems.append(
            f"{key}: cancelled with money still held, and {len(given_up)} voids gave it up: "
            f"{_describe(sent)}"
        )
    if line.state != LineState.CANCELLED and given_up:
        problems.append(f"{key}: {line.state}, yet a hold was given up: {_describe(sent)}")
    return problems


def _refunds_recorded(
    line: LineFacts, sent: Sequence[Mapping[str, Any]], recorded: Sequence[EffectFacts]
) -> list[str]:
    """Every refund payments got is in the store under its key, with the same amount."""
    key, problems = line.key, []
    sent = [row for row in sent if row["path"] == "/refunds"]
    by_key = {str(row["idempotency_key"]): row for row in sent}
    stored = {refund.key: refund for refund in recorded}
    for missing in sorted(set(by_key) - set(stored)):
        problems.append(f"{key}: payments refunded {missing}, the store does not record it")
    for unsent in sorted(set(stored) - set(by_key)):
        problems.append(f"{key}: the store records refund {unsent} that payments never got")
    for refund_key in sorted(set(by_key) & set(stored)):
        amount = Decimal(str(by_key[refund_key]["body"].get("amount", "0")))
        if amount != stored[refund_key].amount:
            problems.append(
                f"{key}: refund {refund_key} is {stored[refund_key].amount} in the store, "
                f"{amount} at payments"
            )
    return problems


ONCE_PER_LINE = {MessageKind.BACKORDER_CONFIRMATION, MessageKind.CANCELLED_REFUNDED}
SHIPMENT_MESSAGES = {MessageKind.SHIPPED, MessageKind.PARTIALLY_SHIPPED}


def _message_problems(
    line: LineFacts,
    sent: Sequence[Mapping[str, Any]],
    recorded: Sequence[EffectFacts],
    shipments: Sequence[EffectFacts],
) -> list[str]:
    key, problems = line.key, []
    prefix = f"{key}:message:"
    events: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    shipment_events: list[str] = []
    for row in sent:
        message_key = str(row["idempotency_key"])
        kind = str(row["body"].get("kind"))
        if not message_key.startswith(prefix):
            problems.append(f"{key}: message {message_key} ({kind}) does not name its line")
            continue
        event = message_key.removeprefix(prefix)
        events[(kind, event)] += 1
        kinds[kind] += 1
        if kind in SHIPMENT_MESSAGES:
            shipment_events.append(event)
    for (kind, event), n in sorted(events.items()):
        if n > 1:
            problems.append(f"{key}: {n} {kind} messages for the event {event}")
    for kind in sorted(ONCE_PER_LINE):
        if kinds[kind] > 1:
            problems.append(f"{key}: {kinds[kind]} {kind} messages: {_describe(sent)}")
    expected = {
        MessageKind.SHIPPED: 1 if line.state == LineState.SHIPPED else 0,
        MessageKind.CANCELLED_REFUNDED: 1 if line.state == LineState.CANCELLED else 0,
    }
    for kind, n in expected.items():
        if kinds[kind] != n:
            problems.append(
                f"{key}: {line.state} with {kinds[kind]} {kind} messages, expected {n}: "
                f"{_describe(sent)}"
            )
    shipment_steps = sorted(f"shipment:{s.sequence}" for s in shipments)
    if sorted(shipment_events) != shipment_steps:
        problems.append(
            f"{key}: shipment messages for {sorted(shipment_events)}, shipments {shipment_steps}"
        )
    stored = {message.key for message in recorded}
    got = {str(row["idempotency_key"]) for row in sent}
    for missing in sorted(got - stored):
        problems.append(f"{key}: message {missing} was sent, the store does not record it")
    for unsent in sorted(stored - got):
        problems.append(f"{key}: the store records message {unsent} that was never sent")
    return problems


def _describe(rows: Sequence[Mapping[str, Any]]) -> str:
    """`#seq key kind-or-amount, ...`: enough to find the records in `GET .../requests`."""
    parts = []
    for row in rows:
        body = row["body"]
        what = body.get("kind") or body.get("amount") or body.get("quantity") or ""
        parts.append(f"#{row.get('seq')} {row['idempotency_key']} {what}".strip())
    return ", ".join(parts) or "none"


async def record_problems(
    simulators_url: str, db: Database, line_keys: Collection[str] | None = None
) -> list[str]:
    """`find_problems` of the simulators at `simulators_url` against the store, for the given
    lines (every line in the store when None). Empty when every effect happened exactly once."""
    records = await fetch_records(simulators_url)
    store = await asyncio.to_thread(read_store, db, line_keys)
    problems = find_problems(records, store)
    if line_keys is not None:
        missing = sorted(set(line_keys) - set(store.lines))
        problems += [f"{key}: not in the store" for key in missing]
    return problems
