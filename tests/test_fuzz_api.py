"""The API fuzzed from its own OpenAPI document (schemathesis), over real HTTP, on each store.

Every operation of `/openapi.json` gets generated requests, valid ones and invalid ones, sent
with the ops or the order system's token. Generation is steered a little so that requests also
reach the deep paths: some name the stack's real SKUs, lines and supplier instead of random ids;
ids that start something (order, receipt and PO ids) get a tag unique to the stack, because both
stacks share one Temporal server and its workflow ids.

What must hold, for every request: no 5xx, and each answer matches the documented schema of its
status and media type; a request schemathesis built invalid is refused with a 4xx. Afterwards,
nothing half-written: every line and receipt the API accepted has its workflow and its store
row, every one it refused has neither (unless an earlier request had accepted those ids), no
line or receipt row exists that no accepted request explains, every cancel it accepted (200 or
202) is carried out, and the store's audit holds for every SKU.

A failing request is reported with schemathesis's account of it (a curl line to replay it) and
what the API logged meanwhile (the traceback of a 500). Generation is derandomized: the same
requests every run, until this file's fuzzing code changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from domain.contract.lines import line_key
from domain.contract.stock import receipt_workflow_id
from domain.values import IDENTIFIER_PATTERN, MINOR_UNITS
from store.audit import broken_rules
from store.tables import LineRow, ReceiptRow, SkuRow
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, backorder
from tests.support.poll import eventually
from tests.support.stack import Stack

T = TypeVar("T")

EXAMPLES_PER_OPERATION = 30
IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
]


@dataclass
class Seeds:
    """What the stack really has, for steered requests to name."""

    tag: str
    skus: list[str]
    lines: list[tuple[str, str]]

    def tagged(self, value: Any) -> Any:
        """A valid id made unique to this stack (once); anything else as it was (invalid)."""
        if isinstance(value, str) and IDENTIFIER.match(value) and not value.startswith(self.tag):
            return (self.tag + value)[:64]
        return value


@dataclass
class Exchange:
    method: str
    path: str
    """The path template, as the document names the operation."""
    path_parameters: dict[str, Any]
    body: Any
    status: int

    @classmethod
    def of(cls, case: schemathesis.Case[Any], status: int) -> Exchange:
        return cls(case.method, case.path, dict(case.path_parameters or {}), case.body, status)


@dataclass
class Fuzzing:
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seeds: list[tuple[str, str]] = field(default_factory=list)
    """The lines seeded before the requests."""

    def sent(self, method: str, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and e.path == path]


def steer(case: schemathesis.Case[Any], data: st.DataObject, seeds: Seeds) -> None:
    """Point some valid requests at real SKUs and lines, and tag the ids that start workflows.
    Invalid ones are left as generated: an edit could make them valid."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    path = case.path_parameters
    if path:
        if "order_id" in path and data.draw(st.booleans(), label="a real line"):
            path["order_id"], path["line_id"] = data.draw(st.sampled_from(seeds.lines))
        elif "order_id" in path:
            path["order_id"] = seeds.tagged(path["order_id"])
        if "po_id" in path:
            path["po_id"] = seeds.tagged(path["po_id"])
        if "sku" in path and data.draw(st.booleans(), label="a real SKU in the path"):
            path["sku"] = data.draw(st.sampled_from(seeds.skus))
        elif "sku" in path:
            path["sku"] = seeds.tagged(path["sku"])  # a catalog update's workflow id names it
        if "supplier_id" in path and data.draw(st.booleans(), label="a real supplier"):
            # As the supplier would send it: with a token that may act for it (half the
            # generated cases carry the order system's, which may not).
            path["supplier_id"] = "acme"
            case.headers["Authorization"] = f"Bearer {OPS_TOKEN}"
    body = case.body
    if isinstance(body, dict):
        for name in ("order_id", "receipt_id"):
            if name in body:
                body[name] = seeds.tagged(body[name])
        if "sku" in body and data.draw(st.booleans(), label="a real SKU in the body"):
            body["sku"] = data.draw(st.sampled_from(seeds.skus))
            within_unstated_rules(body)
        if isinstance(body.get("substitutes"), list) and data.draw(st.booleans()):
            body["substitutes"] = [data.draw(st.sampled_from(seeds.skus))]


def within_unstated_rules(body: dict[str, Any]) -> None:
    """Bring a body the document calls valid within the rules it cannot state, so that it can be
    accepted: ordered-at not in the future and ship-by not before it, a price within its
    currency's minor units, integers sent as integers (JSON Schema's "integer" also admits
    2.0), no in-stock line of a SKU the catalog lacks, a locale the locale data knows. A timestamp
    that is no instant at all is left to be refused."""
    now = datetime.now(UTC)
    ordered = _aware(body.get("ordered_at"))
    if ordered is not None and ordered > now:
        body["ordered_at"] = (now - timedelta(hours=1)).isoformat()
        ordered = now - timedelta(hours=1)
    ship_by = _aware(body.get("ship_by"))
    if ship_by is not None and ordered is not None and ship_by < ordered:
        del body["ship_by"]
    if "expected_at" in body and _aware(body["expected_at"]) is not None:
        body["expected_at"] = (now + timedelta(days=3)).isoformat()
    price, currency = body.get("unit_price"), body.get("currency")
    places = MINOR_UNITS.get(currency) if isinstance(currency, str) else None
    if isinstance(price, str) and places is not None and re.fullmatch(r"[0-9]+(\.[0-9]+)?", price):
        whole, _, cents = price.partition(".")
        body["unit_price"] = f"{whole}.{cents[:places]}" if places and cents else whole
    for item in [body, *(body.get("in_stock_lines") or [])]:
        if isinstance(item, dict) and isinstance(item.get("quantity"), float):
            item["quantity"] = int(item["quantity"])
    if "in_stock_lines" in body:
        body["in_stock_lines"] = []
    customer = body.get("customer")
    if isinstance(customer, dict) and "locale" in customer:
        customer["locale"] = "de-AT"  # the pattern admits tags no locale data knows


class ServerLog(logging.Handler):
    """What the API logged (uvicorn logs an unhandled error with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def since(self, start: int) -> str:
        return "\n".join(self.lines[start:])


def describe(exc: BaseException) -> str:
    """An error with its notes; schemathesis's report of a request (what was sent, what came
    back, a curl line to replay it); each error of a group (hypothesis's distinct failures)."""
    notes = getattr(exc, "__notes__", [])
    if isinstance(exc, FailureGroup):
        return "\n".join([exc.message, *notes])
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(describe(each) for each in exc.exceptions)
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes])


def fuzz(base_url: str, seeds: Seeds, server_log: ServerLog) -> Fuzzing:
    """Every operation, EXAMPLES_PER_OPERATION requests each; blocking (run it in a thread)."""
    found = Fuzzing()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            found.failures.append(f"the document has an unusable operation: {result.err()}")
            continue
        operation = result.ok()
        cases = st.one_of(
            [
                operation.as_strategy(mode, headers={"Authorization": f"Bearer {token}"})
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                for token in (OPS_TOKEN, ORDER_TOKEN)
            ]
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, data=st.data())
        def send(case: schemathesis.Case[Any], data: st.DataObject) -> None:
            steer(case, data, seeds)
            logged = len(server_log.lines)
            response = case.call(base_url=base_url, session=session, timeout=60)
            found.exchanges.append(Exchange.of(case, response.status_code))
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                if response.status_code >= 500:
                    time.sleep(0.5)  # uvicorn logs the error after the 500 has gone out
                exc.add_note(f"server log:\n{server_log.since(logged) or '(nothing)'}")
                raise

        try:
            send()
        except (Exception, BaseExceptionGroup) as exc:
            # Hypothesis's smallest failing request(s) of this operation; go on with the next.
            found.failures.append(f"{operation.label}:\n{describe(exc)}")
    session.close()
    return found


async def seed(stack: Stack, tag: str) -> Seeds:
    """Two SKUs (one the other's substitute, with stock), and two waiting lines."""
    spare, sku = f"{tag}spare", f"{tag}sku"
    await stack.put_sku(spare, 5)
    await stack.put_sku(sku, 0, substitutes=[spare])
    lines = []
    for number in range(2):
        order = f"{tag}seed{number}"
        response = await stack.start(backorder(order, sku, quantity=2))
        assert response.status_code == 201, response.text
        lines.append((order, "1"))
    for order, _ in lines:
        await stack.wait_state(order, "waiting")
    return Seeds(tag=tag, skus=[sku, spare], lines=lines)


async def workflow_exists(stack: Stack, workflow_id: str) -> bool:
    try:
        await stack.services.client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _line_keys(exchanges: list[Exchange], accepted: bool) -> set[str]:
    keys = set()
    for exchange in exchanges:
        body = exchange.body
        if not isinstance(body, dict):
            continue
        order_id, line_id = body.get("order_id"), body.get("line_id")
        if not (isinstance(order_id, str) and isinstance(line_id, str)):
            continue
        if (exchange.status < 300) == accepted and exchange.status < 500:
            keys.add(line_key(order_id, line_id))
    return keys


def store_keys(stack: Stack) -> tuple[set[str], set[str]]:
    with stack.db.reading() as session:
        lines = set(session.exec(select(LineRow.key)).all())
        receipts = {
            receipt_workflow_id(row.supplier_id, row.receipt_id)
            for row in session.exec(select(ReceiptRow)).all()
        }
    return lines, receipts


def _receipt_ids(exchanges: list[Exchange], accepted: bool) -> set[str]:
    ids = set()
    for exchange in exchanges:
        supplier = exchange.path_parameters.get("supplier_id")
        body = exchange.body
        if not (isinstance(body, dict) and isinstance(supplier, str)):
            continue
        if isinstance(body.get("receipt_id"), str) and (exchange.status < 300) == accepted:
            ids.add(receipt_workflow_id(supplier, body["receipt_id"]))
    return ids


def line_states(stack: Stack, keys: set[str]) -> dict[str, str]:
    with stack.db.reading() as session:
        rows = session.exec(select(LineRow).where(col(LineRow.key).in_(keys))).all()
        return {row.key: row.state for row in rows}


def _cancelled_lines(exchanges: list[Exchange]) -> set[str]:
    """Lines whose cancel the API accepted (200 done, 202 under way)."""
    return {
        line_key(e.path_parameters["order_id"], e.path_parameters["line_id"])
        for e in exchanges
        if e.status in (200, 202)
    }


def _cancellers(exchanges: list[Exchange]) -> dict[str, str]:
    """Who each line's first accepted cancel records as having asked: the caller (ops), or the
    buyer when the body says ops relay the buyer's cancel; nothing else in a body counts."""
    cancellers: dict[str, str] = {}
    for e in exchanges:
        if e.status in (200, 202):
            key = line_key(e.path_parameters["order_id"], e.path_parameters["line_id"])
            relayed = isinstance(e.body, dict) and e.body.get("buyer_requested") is True
            cancellers.setdefault(key, "customer" if relayed else "ops")
    return cancellers


def _all_broken_rules(stack: Stack) -> list[str]:
    with stack.db.reading() as session:
        skus = list(session.exec(select(SkuRow.sku)).all())
    return [problem for sku in skus for problem in broken_rules(stack.db, sku)]


async def run(
    fuzzer: Callable[[str, Seeds, ServerLog], Fuzzing], stack: Stack, prefix: str
) -> Fuzzing:
    """`fuzzer` against the stack's API, seeded, with what the server logs meanwhile; fails
    with every failure it found."""
    seeds = await seed(stack, f"{prefix}{uuid.uuid4().hex[:6]}")
    server_log = ServerLog()
    logging.getLogger("uvicorn.error").addHandler(server_log)
    try:
        found = await asyncio.to_thread(fuzzer, stack.api.base_url, seeds, server_log)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(server_log)
    assert not found.failures, "\n\n".join(found.failures)
    found.seeds = seeds.lines
    return found


async def test_fuzzed_requests_get_no_server_error_and_leave_nothing_half_written(
    stack: Stack,
) -> None:
    lines_before, receipts_before = await asyncio.to_thread(store_keys, stack)
    found = await run(fuzz, stack, "fz")

    # Nothing half-written. What the API accepted exists in Temporal and in the store (once its
    # workflow has recorded it); what it refused exists in neither.
    started = found.sent("POST", "/v1/backorders")
    accepted = _line_keys(started, accepted=True)
    refused = _line_keys(started, accepted=False) - accepted - lines_before
    received = found.sent("POST", "/v1/suppliers/{supplier_id}/receipts")
    taken = _receipt_ids(received, accepted=True)
    turned_away = _receipt_ids(received, accepted=False) - taken - receipts_before
    statuses = Counter(exchange.status for exchange in started)
    assert accepted, f"no fuzzed backorder was accepted (answers: {statuses}): steer them"
    statuses = Counter(exchange.status for exchange in received)
    assert taken, f"no fuzzed receipt was accepted (answers: {statuses}): steer them"

    for workflow_id in sorted(accepted | taken):
        assert await workflow_exists(stack, workflow_id), f"{workflow_id}: accepted, no workflow"
    for workflow_id in sorted(refused | turned_away):
        assert not await workflow_exists(stack, workflow_id), f"{workflow_id}: refused, started"
    lines_after, receipts_after = await eventually(
        lambda: asyncio.to_thread(store_keys, stack),
        lambda keys: accepted <= keys[0] and taken <= keys[1],
    )
    assert accepted - lines_after == set(), "accepted lines the store never recorded"
    seeded = {line_key(order_id, line_id) for order_id, line_id in found.seeds}
    unexplained = lines_after - lines_before - accepted - seeded
    assert unexplained == set(), "lines no accepted request explains"
    assert taken - receipts_after == set(), "accepted receipts the store never recorded"
    assert receipts_after - receipts_before - taken == set(), "receipts no request explains"

    # A cancel the API accepted is carried out (or lost its race with the shipment).
    cancelled = _cancelled_lines(found.sent("POST", "/v1/backorders/{order_id}/{line_id}/cancel"))
    states = await eventually(
        lambda: asyncio.to_thread(line_states, stack, cancelled),
        lambda states: all(state in ("cancelled", "shipped") for state in states.values()),
    )
    assert {
        key: state for key, state in states.items() if state not in ("cancelled", "shipped")
    } == {}

    # And the rules of stock hold for every SKU in the catalog.
    assert await asyncio.to_thread(_all_broken_rules, stack) == []


# ---- stateful: sequences of requests that follow the document's links ----------------------

STATEFUL_EXAMPLES = 30
STEERED = {"start_backorder", "put_purchase_order"}
"""Operations whose generated valid bodies are brought within the rules the document cannot
state, so that lines start and supply comes in, for the later steps to act on."""
STATEFUL_STEPS = 6
CLOCK_SKEW = timedelta(minutes=5)
ODD_TIMESTAMPS = [
    "2026-12-10T00:00:00",
    "0001-01-01T00:00:00Z",
    "2090-01-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
    "1700000000",
    "2026-12-10",
]
"""Values a caller sends by mistake; any of them accepted stalled a line or lied to a customer."""


def date_times() -> st.SearchStrategy[str]:
    """Instants around now, with offsets, so that generated starts and ETAs can be accepted and
    reach the lines; and now and then one of the ODD_TIMESTAMPS."""
    now = datetime.now(UTC).replace(tzinfo=None)
    offsets = st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    )
    sane = st.datetimes(
        min_value=now - timedelta(days=30), max_value=now + timedelta(days=60), timezones=offsets
    ).map(lambda moment: moment.isoformat())
    return st.one_of(sane, sane, sane, st.sampled_from(ODD_TIMESTAMPS))


def _aware(value: Any) -> datetime | None:
    """`value` as an aware instant of 2000-2099 read independently of the service's models,
    or None."""
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T", value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None or not 2000 <= moment.astimezone(UTC).year < 2100:
        return None
    return moment


def accepted_values_are_usable(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> bool:
    """A request the API accepted (2xx) carries only values a line can use: the rules of
    issue 13, checked here without the service's own models."""
    if response.status_code >= 300 or not isinstance(case.body, dict):
        return True
    body, operation = case.body, case.operation.definition.raw.get("operationId")
    if operation == "start_backorder":
        ordered = _aware(body.get("ordered_at"))
        assert ordered is not None, f"accepted ordered_at {body.get('ordered_at')!r}"
        assert ordered <= datetime.now(UTC) + CLOCK_SKEW, f"accepted ordered_at {ordered}"
        if body.get("ship_by") is not None:
            ship_by = _aware(body["ship_by"])
            assert ship_by is not None and ship_by >= ordered, (
                f"accepted ship_by {body['ship_by']!r}"
            )
        price, currency = body.get("unit_price"), body.get("currency")
        assert currency in MINOR_UNITS, f"accepted currency {currency!r}"
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(price)), f"accepted price {price!r}"
        places = len(str(price).partition(".")[2])
        assert places <= MINOR_UNITS[currency], f"accepted {price} {currency}"
    if operation == "set_eta" and body.get("eta") is not None:
        assert _aware(body["eta"]) is not None, f"accepted eta {body['eta']!r}"
    if operation == "put_purchase_order":
        assert _aware(body.get("expected_at")) is not None, f"accepted {body.get('expected_at')!r}"
    if operation == "cancel_backorder":
        assert set(body) <= {"reason", "buyer_requested"}, f"accepted cancel body {body}"
    return True


def fuzz_statefully(base_url: str, seeds: Seeds, server_log: ServerLog) -> Fuzzing:
    """Scenarios of STATEFUL_STEPS requests that follow the OpenAPI links (a SKU made, a line
    started on it, its ETA moved, a choice made, a cancel), with the ops token; blocking."""
    found = Fuzzing()
    session = requests.Session()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # Only the document's own links: scenarios start from a catalog entry or a line.
    schema.config.phases.stateful.inference.algorithms = []

    scenarios = iter(range(1_000_000))

    class Fuzz(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Ids of its own for each scenario: hypothesis replays a scenario to shrink it, and
            # a replay must create what the first run created (a 201), not find it (a 200).
            self.ids = Seeds(f"{seeds.tag}{next(scenarios)}x", seeds.skus, seeds.lines)

        def before_call(self, case: schemathesis.Case[Any]) -> None:
            path = case.path_parameters or {}
            for name in ("order_id", "po_id", "sku"):
                if name in path:
                    path[name] = self.ids.tagged(path[name])
            if isinstance(case.body, dict):
                for name in ("order_id", "receipt_id"):
                    if name in case.body:
                        case.body[name] = self.ids.tagged(case.body[name])
                mode = case.meta.generation.mode if case.meta is not None else None
                steered = case.operation.definition.raw.get("operationId") in STEERED
                if mode is GenerationMode.POSITIVE and steered:
                    within_unstated_rules(case.body)
                    sku = case.body.get("sku")
                    if isinstance(sku, str) and not sku.startswith(seeds.tag):
                        case.body["sku"] = seeds.skus[0]  # not one a link gave: a real one

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {
                "base_url": base_url,
                "session": session,
                "timeout": 60,
                "headers": {"Authorization": f"Bearer {OPS_TOKEN}"},
            }

        def after_call(self, response: Any, case: schemathesis.Case[Any]) -> None:
            found.exchanges.append(Exchange.of(case, response.status_code))

        def validate_response(
            self, response: Any, case: schemathesis.Case[Any], **kwargs: Any
        ) -> None:
            logged = len(server_log.lines)
            try:
                case.validate_response(response, checks=[*CHECKS, accepted_values_are_usable])
            except FailureGroup as exc:
                if response.status_code >= 500:
                    time.sleep(0.5)
                exc.add_note(f"server log:\n{server_log.since(logged) or '(nothing)'}")
                raise

    try:
        Fuzz.run(
            settings=settings(
                max_examples=STATEFUL_EXAMPLES,
                stateful_step_count=STATEFUL_STEPS,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
        )
    except (Exception, BaseExceptionGroup) as exc:
        found.failures.append(describe(exc))
    finally:
        session.close()
    return found


def _workflow_task_failures(history: WorkflowHistory) -> list[str]:
    """The workflow tasks that failed on the worker. Not counted: the server's refusal of a
    task's commands because a signal came in while it ran (`UnhandledCommand`): the worker
    runs the task again with the signal, which is how Temporal delivers it; nothing in the
    workflow failed."""
    unhandled = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    return [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and event.workflow_task_failed_event_attributes.cause != unhandled
    ]


async def waiting_on(stack: Stack, keys: list[str]) -> str:
    """What each line's workflow waits for: its status, pending activities and task."""
    described = []
    for key in keys:
        raw = (await stack.services.client.get_workflow_handle(key).describe()).raw_description
        activities = [
            f"{a.activity_type.name} (attempt {a.attempt}: {a.last_failure.message or '-'})"
            for a in raw.pending_activities
        ]
        task = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else "-"
        history = await stack.services.client.get_workflow_handle(key).fetch_history()
        events = [
            EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            + (
                f"({event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name})"
                if event.HasField("workflow_execution_update_accepted_event_attributes")
                else f"({event.workflow_execution_signaled_event_attributes.signal_name})"
                if event.HasField("workflow_execution_signaled_event_attributes")
                else ""
            )
            for event in history.events
        ]
        described.append(
            f"  {key}: {raw.workflow_execution_info.status}, activities {activities or '-'}, "
            f"workflow task attempt {task}; history: {', '.join(events)}"
        )
    return "\n".join(described)


def cancelled_by(stack: Stack, keys: set[str]) -> dict[str, str | None]:
    with stack.db.reading() as session:
        rows = session.exec(select(LineRow).where(col(LineRow.key).in_(keys))).all()
        return {row.key: row.cancelled_by for row in rows if row.state == "cancelled"}


def _keys(lines: list[tuple[str, str]]) -> list[str]:
    return [line_key(order_id, line_id) for order_id, line_id in lines]


async def _tell_a_line_a_new_date(stack: Stack, keys: list[str]) -> list[str]:
    """The first of `keys` still waiting that takes a new ETA (200), as a list of its key."""
    eta = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    for key in keys:
        _, order_id, line_id = key.split(":", 2)
        answer = await stack.api.post(
            f"/v1/backorders/{order_id}/{line_id}/eta", json={"eta": eta}, headers=stack.auth("ops")
        )
        if answer.status_code == 200:
            return [key]
    return []


async def test_stateful_fuzzing_along_the_links_accepts_only_usable_values_and_stalls_no_line(
    stack: Stack,
) -> None:
    """Requests chained by the document's links (catalog entry -> line -> ETA, choices, cancel)
    with generated and odd values: no 5xx, answers as documented, every accepted value one a
    line can use, no line's workflow failing a task on what it was sent, and every cancel
    recorded as the caller's (ops), or as the buyer's when ops relay it, whatever else the
    body said."""
    found = await run(fuzz_statefully, stack, "sf")
    started = _line_keys(found.sent("POST", "/v1/backorders"), accepted=True)
    operations = Counter((e.method, e.path, e.status // 100) for e in found.exchanges)
    assert started, f"no generated line was accepted: {operations}"
    moved = [
        line_key(e.path_parameters["order_id"], e.path_parameters["line_id"])
        for e in found.sent("POST", "/v1/backorders/{order_id}/{line_id}/eta")
        if e.status < 300
    ]
    if not moved:
        # Where the walk goes depends on what the stack answered along it; when it told no line
        # a new date, one is told here along the same route, so that the checks below always
        # cover a line that took a new ETA.
        moved = await _tell_a_line_a_new_date(stack, sorted(started) + _keys(found.seeds))
    assert moved, f"no ETA reached a line: {operations}"

    for key in sorted(started):
        history = await stack.services.client.get_workflow_handle(key).fetch_history()
        assert _workflow_task_failures(history) == [], f"{key} failed a workflow task"
    cancelled = _cancelled_lines(found.sent("POST", "/v1/backorders/{order_id}/{line_id}/cancel"))
    try:
        await eventually(
            lambda: asyncio.to_thread(line_states, stack, cancelled),
            lambda states: all(state in ("cancelled", "shipped") for state in states.values()),
            within=90,
            what="every accepted cancel carried out",
        )
    except AssertionError as exc:
        states = await asyncio.to_thread(line_states, stack, cancelled)
        stuck = [key for key, state in states.items() if state not in ("cancelled", "shipped")]
        raise AssertionError(f"{exc}\n{await waiting_on(stack, stuck)}") from None
    recorded = await asyncio.to_thread(cancelled_by, stack, cancelled)
    expected = _cancellers(found.sent("POST", "/v1/backorders/{order_id}/{line_id}/cancel"))
    assert recorded == {key: expected[key] for key in recorded}, recorded
    assert await asyncio.to_thread(_all_broken_rules, stack) == []


schemathesis.openapi.format("date-time", date_times())
