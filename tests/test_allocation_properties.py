"""Allocation under concurrency, by property: hypothesis writes scenarios of new lines, supplier
arrivals (some reported twice), cancels, substitutions, shipments, catalog stock counts and
retried line records; each scenario runs as batches, and every operation of a batch runs at the
same moment from its own thread and its own connection, through the store functions the
activities call (no Temporal here). PostgreSQL is the store that matters (row locks); SQLite,
whose transactions queue for the file's write lock, runs the same scenarios.

What is asserted after every batch, once all of its operations have returned:

1. The store's own audit (`store.audit.broken_rules`) for every SKU of the scenario: free stock
   never negative, free stock + net allocations == stock in (no oversell, no unit lost), and no
   free stock while a line of that SKU waits (no stranded stock).
2. Per line: the units it holds net of returns never exceed its quantity, what it shipped never
   exceeds what it was allocated, and a cancelled line holds nothing.
3. The batch is serializable against a reference model of the README's queue. The model
   (`Model` below) is a few lines of plain Python: one SKU's free stock goes to its waiting lines
   sorted by (priority, ship-by, ordered-at, line key), each taking what it still needs, and
   the rest of the rules of `store/stock.py` (duplicate receipts, cancel, substitute, counts).
   For some order of the batch's operations, running them one at a time through the model must
   give exactly what the store did: every operation's result (who got how many units, in which
   order; refused or not) and afterwards every line, every SKU and every allocation row.

Why (3) is the priority property that can really be asserted under concurrency: operations
that overlap in time have no order of their own, so "the first line in the queue at that moment"
is only defined once the store has chosen an order. The SKU lock makes the store choose one: the
transactions on a SKU run one after the other. So the claim is that the concurrent outcome equals
SOME one-at-a-time run (any permutation of the batch; between batches the order is real time),
and the model serves each arrival strictly in queue order. A store that served a later line
first, split an arrival wrongly, lost an update between two racing transactions, or allocated
stock twice cannot match any permutation. Every operation of a batch works on a different line
(one workflow per line serializes its own actions), so the model's inputs are known when the
batch starts.

Limits, on purpose: every line is priority class 0 (`record_line` has no way to set another),
so the order exercised is ship-by, ordered-at, key. Keys are lower-case letters and digits of
fixed width, so that any database collation sorts them as Python does. A retried record's list
of the line's allocations is compared as a multiset (see `RecordLine.retry`).
"""

from __future__ import annotations

import copy
import itertools
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from domain.contract.lines import line_key
from domain.line.choices import SubstituteInput
from domain.line.effects import RecordLineResult, ReleaseInput
from domain.line.input import LineInput
from domain.line.state import LineState
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest, Customer, ReceiptRequest, SkuRequest
from domain.stock import ReceiptInput, SkuInput
from domain.values import Channel, canonical_hash
from store import records, stock
from store.audit import broken_rules
from store.db import Database
from store.tables import AllocationRow, LineRow, ShipmentRow, SkuRow
from tests.support.concurrent import Stores, concurrent_stores, run_at_once

THREADS = 4
"""Operations per batch, each on its own thread and connection."""

SKU_NAMES = ("a", "b", "c")
SUBSTITUTES = {"a": ["c", "b"], "b": ["c"], "c": ["a"]}
"""What each SKU may be replaced by (names before the scenario's prefix)."""

SUPPLIER = "acme"
BASE = datetime(2026, 1, 5, 9, tzinfo=UTC)
LINE_POLICY = DEFAULT_POLICY.for_channel(Channel.WEB)

Outcome = tuple[Any, ...]
Notices = tuple[tuple[str, int], ...]


# ---- the scenario, as hypothesis draws it ---------------------------------------------------


@dataclass(frozen=True)
class NewLine:
    sku: int
    quantity: int
    ship_by_day: int
    ordered_hour: int
    rank: int
    """First part of the order id: the line key's order differs from the order of creation."""


@dataclass(frozen=True)
class Arrival:
    sku: int
    quantity: int
    reported: int
    """1, or 2: the supplier reports the same receipt twice, at the same moment."""


@dataclass(frozen=True)
class Cancel:
    line: int


@dataclass(frozen=True)
class Substitute:
    line: int
    to_sku: int


@dataclass(frozen=True)
class Ship:
    line: int


@dataclass(frozen=True)
class Count:
    sku: int
    free_stock: int


@dataclass(frozen=True)
class Retry:
    line: int
    """The line's record activity runs again (a retry after its commit)."""


Operation = NewLine | Arrival | Cancel | Substitute | Ship | Count | Retry

_sku = st.integers(0, len(SKU_NAMES) - 1)
_busy_sku = st.sampled_from([0, 0, 0, 1, 2])
"""Most lines and arrivals are for one SKU, so that its queue grows long enough to split."""
_line = st.integers(0, 40)
_new_line = st.builds(
    NewLine,
    sku=_busy_sku,
    quantity=st.integers(1, 6),
    ship_by_day=st.integers(0, 2),
    ordered_hour=st.integers(0, 2),
    rank=st.integers(0, 9),
)
_arrival = st.builds(
    Arrival, sku=_busy_sku, quantity=st.integers(1, 6), reported=st.sampled_from([1, 1, 1, 2])
)
_kinds: dict[str, st.SearchStrategy[Operation]] = {
    "new line": _new_line,
    "arrival": _arrival,
    "cancel": st.builds(Cancel, line=_line),
    "substitute": st.builds(Substitute, line=_line, to_sku=_sku),
    "ship": st.builds(Ship, line=_line),
    "count": st.builds(Count, sku=_sku, free_stock=st.integers(0, 4)),
    "retry": st.builds(Retry, line=_line),
}
_operation: st.SearchStrategy[Operation] = st.sampled_from(
    # New lines and arrivals weigh more: they make and serve the queues the others act on.
    ["new line"] * 4 + ["arrival"] * 3 + ["cancel", "substitute", "ship", "count", "retry"]
).flatmap(_kinds.__getitem__)


@dataclass(frozen=True)
class Scenario:
    initial_stock: tuple[int, ...]
    batches: tuple[tuple[Operation, ...], ...]


scenarios = st.builds(
    Scenario,
    initial_stock=st.tuples(*(st.integers(0, 3) for _ in SKU_NAMES)),
    batches=st.lists(
        st.lists(_operation, min_size=2, max_size=THREADS).map(tuple), min_size=4, max_size=12
    ).map(tuple),
)


# ---- what one thread does: a call of a store function ---------------------------------------


@dataclass(frozen=True)
class RecordLine:
    line_input: LineInput
    retry: bool = False
    """A retry reports every allocation the line ever had, in the order the store made them.
    Allocations from two racing transactions of one batch may have either order (the results
    of that batch could not tell), so a retry's report is compared as a multiset."""

    @property
    def key(self) -> str:
        request = self.line_input.request
        return line_key(request.order_id, request.line_id)

    def __repr__(self) -> str:
        request = self.line_input.request
        return (
            f"RecordLine({self.key}, {request.quantity} x {request.sku}, "
            f"ship_by={self.line_input.ship_by:%d %H:%M}, ordered_at={request.ordered_at:%d %H:%M}"
            f"{', retry' if self.retry else ''})"
        )


@dataclass(frozen=True)
class RecordReceipt:
    receipt: ReceiptInput

    def __repr__(self) -> str:
        receipt = self.receipt.receipt
        return f"RecordReceipt({receipt.receipt_id}, {receipt.quantity} x {receipt.sku})"


@dataclass(frozen=True)
class Release:
    key: str
    sku: str


@dataclass(frozen=True)
class MoveToSubstitute:
    key: str
    from_sku: str
    to_sku: str


@dataclass(frozen=True)
class RecordShipment:
    key: str
    sku: str
    sequence: int
    quantity: int


@dataclass(frozen=True)
class ApplySku:
    sku: str
    free_stock: int


Call = RecordLine | RecordReceipt | Release | MoveToSubstitute | RecordShipment | ApplySku


def _notices(allocations: Any) -> Notices:
    return tuple((notice.line_key, notice.quantity) for notice in allocations)


def _line_facts(done: RecordLineResult) -> tuple[int, str]:
    return done.allocated_quantity, done.state.value


def _refusal(message: str) -> str:
    if "already been" in message:
        return "final"
    if "not offered" in message:
        return "not offered"
    return "no stock"


def run_call(db: Database, call: Call) -> Outcome:
    """Call the store function, and reduce its answer to what the model can predict."""
    match call:
        case RecordLine(line_input=line_input, retry=retry):
            done = stock.record_line(db, line_input)
            notices = _notices(done.allocations)
            return ("line", tuple(sorted(notices)) if retry else notices, *_line_facts(done))
        case RecordReceipt(receipt=receipt):
            got = stock.record_receipt(db, receipt)
            return ("receipt", got.duplicate, _notices(got.allocations), got.free_stock)
        case Release(key=key, sku=sku):
            released = stock.release_line(db, ReleaseInput(line_key=key, sku=sku, reason="test"))
            return (
                "release",
                released.already_cancelled,
                released.released_quantity,
                released.refund_quantity,
                _notices(released.reallocated),
            )
        case MoveToSubstitute(key=key, from_sku=from_sku, to_sku=to_sku):
            change = SubstituteInput(line_key=key, from_sku=from_sku, to_sku=to_sku)
            try:
                moved = stock.substitute_line(db, change)
            except stock.SubstituteRefusedError as exc:
                return ("refused", _refusal(str(exc)))
            return (
                "substitute",
                moved.quantity,
                moved.released_quantity,
                _notices(moved.reallocated),
            )
        case RecordShipment(key=key, sku=sku, sequence=sequence, quantity=quantity):
            row = ShipmentRow(
                idempotency_key=f"{key}:shipment:{sequence}",
                line_key=key,
                sequence=sequence,
                quantity=quantity,
                tracking_number=f"T-{sequence}",
                carrier_shipment_id=f"S-{sequence}",
            )
            records.record_shipment(db, line_key=key, sku=sku, row=row)
            return ("shipped",)
        case ApplySku(sku=sku, free_stock=free_stock):
            result = stock.apply_sku(db, _sku_input(sku, free_stock))
            return ("sku", _notices(result.allocations), result.free_stock)
    raise AssertionError(f"unknown call {call!r}")


def _sku_input(sku: str, free_stock: int) -> SkuInput:
    prefix, _, name = sku.rpartition("-")
    request = SkuRequest(
        name=f"Product {name}",
        free_stock=free_stock,
        substitutes=[f"{prefix}-{other}" for other in SUBSTITUTES[name]],
        price="10.00",
    )
    return SkuInput(sku=sku, request=request, request_hash=canonical_hash(request))


# ---- the reference model ---------------------------------------------------------------------


@dataclass
class ModelLine:
    key: str
    sku: str
    quantity: int
    queue_position: tuple[int, datetime, datetime, str]
    allocated: int = 0
    shipped: int = 0
    released: int = 0
    cancelled: bool = False
    given: list[int] = field(default_factory=list)
    """Positive allocations to this line, in order (what a retried record reports)."""

    @property
    def net(self) -> int:
        return self.allocated - self.released

    @property
    def held(self) -> int:
        return self.allocated - self.shipped - self.released

    @property
    def waiting(self) -> bool:
        return not self.cancelled and self.net < self.quantity

    @property
    def state(self) -> str:
        if self.cancelled:
            return LineState.CANCELLED.value
        return LineState.of(self.quantity, self.net, self.shipped).value


@dataclass
class ModelSku:
    free: int = 0
    stock_in: int = 0
    substitutes: tuple[str, ...] = ()


@dataclass
class Model:
    """The README's queue, one operation at a time."""

    skus: dict[str, ModelSku] = field(default_factory=dict)
    lines: dict[str, ModelLine] = field(default_factory=dict)
    receipts: set[str] = field(default_factory=set)
    by_source: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    ledger: Counter[tuple[str, str, int, str]] = field(default_factory=Counter)
    """Allocation rows: (line key, SKU, quantity, source)."""

    def allocate(self, sku: str, source: str) -> Notices:
        row = self.skus[sku]
        queue = sorted(
            (line for line in self.lines.values() if line.sku == sku and line.waiting),
            key=lambda line: line.queue_position,
        )
        notices: list[tuple[str, int]] = []
        for line in queue:
            if row.free == 0:
                break
            take = min(row.free, line.quantity - line.net)
            row.free -= take
            line.allocated += take
            line.given.append(take)
            notices.append((line.key, take))
            self.ledger[(line.key, sku, take, source)] += 1
        self.by_source.setdefault(source, []).extend(notices)
        return tuple(notices)

    def give_back(self, line: ModelLine, sku: str) -> int:
        held = line.held
        if held > 0:
            line.released += held
            self.skus[sku].free += held
            self.ledger[(line.key, sku, -held, f"returned:{line.key}")] += 1
        return held

    def apply(self, call: Call) -> Outcome:
        match call:
            case RecordLine(line_input=line_input):
                key, request = call.key, line_input.request
                if key in self.lines:
                    line = self.lines[key]
                    notices = tuple(sorted((key, quantity) for quantity in line.given))
                else:
                    line = self.lines[key] = ModelLine(
                        key=key,
                        sku=request.sku,
                        quantity=request.quantity,
                        queue_position=(0, line_input.ship_by, request.ordered_at, key),
                    )
                    notices = self.allocate(request.sku, f"sku:{request.sku}")
                return ("line", notices, line.allocated, line.state)
            case RecordReceipt(receipt=receipt_input):
                receipt = receipt_input.receipt
                source = stock.receipt_source(receipt_input.supplier_id, receipt.receipt_id)
                row = self.skus[receipt.sku]
                if source in self.receipts:
                    return ("receipt", True, tuple(self.by_source.get(source, [])), row.free)
                self.receipts.add(source)
                row.free += receipt.quantity
                row.stock_in += receipt.quantity
                return ("receipt", False, self.allocate(receipt.sku, source), row.free)
            case Release(key=key, sku=sku):
                line = self.lines[key]
                refund = line.quantity - line.shipped
                if line.cancelled:
                    again = tuple(self.by_source.get(f"release:{key}", []))
                    return ("release", True, line.released, refund, again)
                held = self.give_back(line, sku)
                line.cancelled = True
                return ("release", False, held, refund, self.allocate(sku, f"release:{key}"))
            case MoveToSubstitute(key=key, from_sku=from_sku, to_sku=to_sku):
                line, old, new = self.lines[key], self.skus[from_sku], self.skus[to_sku]
                if line.state in (LineState.SHIPPED.value, LineState.CANCELLED.value):
                    return ("refused", "final")
                if to_sku not in old.substitutes:
                    return ("refused", "not offered")
                needed = line.quantity - line.shipped
                if new.free < needed:
                    return ("refused", "no stock")
                held = self.give_back(line, from_sku)
                new.free -= needed
                line.allocated += needed
                line.given.append(needed)
                self.ledger[(key, to_sku, needed, f"substitute:{key}")] += 1
                line.sku = to_sku
                notices = self.allocate(from_sku, f"release:{key}")
                return ("substitute", needed, held, notices)
            case RecordShipment(key=key, quantity=quantity):
                self.lines[key].shipped += quantity
                return ("shipped",)
            case ApplySku(sku=sku, free_stock=free_stock):
                row = self.skus[sku]
                row.stock_in += free_stock - row.free
                row.free = free_stock
                return ("sku", self.allocate(sku, f"sku:{sku}"), row.free)
        raise AssertionError(f"unknown call {call!r}")

    def snapshot(self) -> Snapshot:
        return Snapshot(
            skus={sku: (row.free, row.stock_in) for sku, row in self.skus.items()},
            lines={
                key: (
                    line.sku,
                    line.quantity,
                    line.allocated,
                    line.shipped,
                    line.released,
                    line.state,
                )
                for key, line in self.lines.items()
            },
            waiting={key for key, line in self.lines.items() if line.waiting},
            ledger=+self.ledger,
        )


@dataclass
class Snapshot:
    """What the store holds for one scenario, in the model's terms."""

    skus: dict[str, tuple[int, int]]
    lines: dict[str, tuple[str, int, int, int, int, str]]
    """Key: SKU, quantity, allocated, shipped, released, state."""
    waiting: set[str]
    ledger: Counter[tuple[str, str, int, str]]


def read_store(db: Database, prefix: str, skus: list[str]) -> Snapshot:
    with db.reading() as session:
        sku_rows = session.exec(select(SkuRow).where(col(SkuRow.sku).in_(skus))).all()
        line_rows = session.exec(
            select(LineRow).where(col(LineRow.key).startswith(f"backorder:{prefix}-"))
        ).all()
        allocation_rows = session.exec(
            select(AllocationRow).where(col(AllocationRow.sku).in_(skus))
        ).all()
    return Snapshot(
        skus={row.sku: (row.free_stock, row.stock_in_total) for row in sku_rows},
        lines={
            row.key: (
                row.sku,
                row.quantity,
                row.allocated_quantity,
                row.shipped_quantity,
                row.released_quantity,
                row.state,
            )
            for row in line_rows
        },
        waiting={row.key for row in line_rows if row.waiting},
        ledger=Counter(
            (row.line_key, row.sku, row.quantity, row.source) for row in allocation_rows
        ),
    )


def line_rules(snapshot: Snapshot) -> list[str]:
    """No line holds more than it ordered; nothing shipped that was not allocated."""
    problems = []
    for key, (_sku, quantity, allocated, shipped, released, state) in snapshot.lines.items():
        net = allocated - released
        if not 0 <= net <= quantity:
            problems.append(f"{key}: holds {net} net of returns, ordered {quantity}")
        if shipped > net:
            problems.append(f"{key}: shipped {shipped} of {net} allocated")
        if state == LineState.CANCELLED.value and allocated - shipped - released != 0:
            problems.append(f"{key}: cancelled, still holds {allocated - shipped - released}")
    return problems


# ---- running a scenario ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    with concurrent_stores(request.param, THREADS) as opened:
        yield opened


def run_batch(stores: Stores, calls: list[Call]) -> list[Outcome]:
    """Every call at the same moment, each from its own thread and connection."""
    return run_at_once(stores, calls, run_call)


class Scenarist:
    """Turns a drawn scenario into store calls, against the model's state at each batch."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.inputs: dict[str, LineInput] = {}
        self.receipts = 0
        self.shipments: Counter[str] = Counter()

    def sku(self, index: int) -> str:
        return f"{self.prefix}-{SKU_NAMES[index]}"

    def calls(self, batch: tuple[Operation, ...], model: Model) -> tuple[list[Call], list[str]]:
        """The batch's calls (at most one per thread, one per line), and the lines it creates."""
        calls: list[Call] = []
        touched: set[str] = set()
        for operation in batch:
            room = THREADS - len(calls)
            if room == 0:
                break
            if isinstance(operation, NewLine):
                record = RecordLine(self._new_line(operation))
                calls.append(record)
                touched.add(record.key)
            elif isinstance(operation, Arrival):
                self.receipts += 1
                request = ReceiptRequest(
                    receipt_id=f"{self.prefix}-r{self.receipts}",
                    sku=self.sku(operation.sku),
                    quantity=operation.quantity,
                )
                receipt = ReceiptInput(
                    supplier_id=SUPPLIER, receipt=request, request_hash=canonical_hash(request)
                )
                calls.extend([RecordReceipt(receipt)] * min(operation.reported, room))
            elif isinstance(operation, Count):
                calls.append(ApplySku(self.sku(operation.sku), operation.free_stock))
            else:
                call = self._line_call(operation, model, touched)
                if call is not None:
                    calls.append(call)
        created = [
            call.key
            for call in calls
            if isinstance(call, RecordLine) and call.key not in model.lines
        ]
        return calls, created

    def _new_line(self, operation: NewLine) -> LineInput:
        serial = len(self.inputs)
        request = BackorderRequest(
            order_id=f"{self.prefix}-{operation.rank}-{serial:02d}",
            line_id="1",
            sku=self.sku(operation.sku),
            quantity=operation.quantity,
            unit_price="10.00",
            currency="USD",
            channel=Channel.WEB,
            customer=Customer(id=f"c{serial}", email=f"c{serial}@example.com"),
            ordered_at=BASE + timedelta(hours=operation.ordered_hour),
        )
        line_input = LineInput(
            request=request,
            ship_by=BASE + timedelta(days=1 + operation.ship_by_day),
            request_hash=canonical_hash(request),
            policy=LINE_POLICY,
        )
        self.inputs[line_key(request.order_id, request.line_id)] = line_input
        return line_input

    def _line_call(
        self, operation: Cancel | Substitute | Ship | Retry, model: Model, touched: set[str]
    ) -> Call | None:
        if not self.lines:
            return None
        key = self.lines[operation.line % len(self.lines)]
        if key in touched:
            return None  # one workflow per line: its own actions never overlap
        touched.add(key)
        line = model.lines[key]
        match operation:
            case Cancel():
                return Release(key, line.sku)
            case Substitute(to_sku=to_sku):
                target = self.sku(to_sku)
                return None if target == line.sku else MoveToSubstitute(key, line.sku, target)
            case Ship():
                if line.cancelled or line.held == 0:
                    return None
                self.shipments[key] += 1
                return RecordShipment(key, line.sku, self.shipments[key], line.held)
            case Retry():
                return RecordLine(self.inputs[key], retry=True)
        raise AssertionError(f"not a line operation: {operation!r}")


def serialization(
    model: Model, calls: list[Call], outcomes: list[Outcome], seen: Snapshot
) -> Model | None:
    """The model after the batch, for the first order of its calls that explains the store."""
    for order in itertools.permutations(range(len(calls))):
        trial = copy.deepcopy(model)
        predicted: list[Outcome] = [()] * len(calls)
        for index in order:
            predicted[index] = trial.apply(calls[index])
        if predicted == outcomes and trial.snapshot() == seen:
            if list(order) != sorted(order):
                event("batch explained only by an order other than the listed one")
            return trial
    return None


def note_outcomes(outcomes: list[Outcome]) -> None:
    """What the scenarios exercised (pytest --hypothesis-show-statistics)."""
    event(f"batch of {len(outcomes)} calls")
    for outcome in outcomes:
        kind = outcome[0]
        if kind == "refused":
            event(f"substitute refused: {outcome[1]}")
        elif kind == "substitute":
            event("substitute taken")
        elif kind == "receipt" and outcome[1]:
            event("receipt reported twice")
        elif kind == "receipt" and len(outcome[2]) > 1:
            event("arrival split over several lines")
        elif kind == "release" and outcome[4]:
            event("cancelled line's stock passed on")


def explain(model: Model, calls: list[Call], outcomes: list[Outcome], seen: Snapshot) -> str:
    """The calls in the order they were listed, what the model says, and what the store did."""
    trial = copy.deepcopy(model)
    lines = ["no order of the batch's calls gives what the store did; in listed order:"]
    for call, outcome in zip(calls, outcomes, strict=True):
        lines.append(f"  {call!r}")
        lines.append(f"      store: {outcome!r}")
        lines.append(f"      model: {trial.apply(call)!r}")
    expected = trial.snapshot()
    for name in ("skus", "lines", "waiting", "ledger"):
        if getattr(expected, name) != getattr(seen, name):
            lines.append(f"  {name}: model {getattr(expected, name)!r}")
            lines.append(f"  {name}: store {getattr(seen, name)!r}")
    return "\n".join(lines)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios)
def test_concurrent_allocation_never_oversells_strands_or_skips_the_queue(
    stores: Stores, scenario: Scenario
) -> None:
    note(repr(scenario))  # pytest plugins may silence hypothesis's own print of it
    prefix = f"p{uuid.uuid4().hex[:8]}"
    scenarist = Scenarist(prefix)
    skus = [scenarist.sku(index) for index in range(len(SKU_NAMES))]
    db = stores.dbs[0]
    model = Model()
    for name, free in zip(SKU_NAMES, scenario.initial_stock, strict=True):
        sku = f"{prefix}-{name}"
        substitutes = tuple(f"{prefix}-{other}" for other in SUBSTITUTES[name])
        model.skus[sku] = ModelSku(substitutes=substitutes)
        model.apply(ApplySku(sku, free))
        stock.apply_sku(db, _sku_input(sku, free))

    for number, batch in enumerate(scenario.batches, start=1):
        calls, created = scenarist.calls(batch, model)
        if not calls:
            continue
        outcomes = run_batch(stores, calls)
        note_outcomes(outcomes)
        seen = read_store(db, prefix, skus)

        problems = [problem for sku in skus for problem in broken_rules(db, sku)]
        problems += line_rules(seen)
        assert problems == [], f"batch {number} on {stores.backend}: {problems}"

        after = serialization(model, calls, outcomes, seen)
        assert after is not None, f"batch {number} on {stores.backend}:\n" + explain(
            model, calls, outcomes, seen
        )
        model = after
        scenarist.lines.extend(created)
