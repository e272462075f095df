"""Chaos: flaky outside services and duplicate requests still give exactly one effect each.

The simulators fail 30 % of the calls to each outside service (`PUT /_faults`): 10 % answered
500/503 with nothing done, 10 % held past the caller's timeout and done late, 10 % done and
recorded but the answer lost (a 500, or the connection dropped mid-answer), on top of a little
latency. Through that, and through duplicate receipts, start requests and customer clicks sent
all at once, every line ends shipped or refunded, and the simulators' records hold exactly one
shipment per allocation step, one refund per cancellation, one message per event.

The chaos tests run on a stack of their own per store backend (faults never leak into other
tests), whose worker calls the outside services with a 1 s timeout instead of 10 s, so that a
timed-out call costs a second, not ten: 10-45 s each per backend on a 2-core machine. The fault
API itself is tried first, on the simulators alone.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from cli.stack import serve
from client.http import Retry
from domain.contract.lines import line_key
from simulators.app import FAULTS_ENV, FaultConfigError, create_app, faults_from_env
from store.tables import MessageRow, ShipmentRow
from tests.support.chaos import (
    by_reference,
    fetch_records,
    find_problems,
    read_store,
    repeated_keys,
    settle,
)
from tests.support.factories import FAST_POLICY, backorder, hours_ago, new_id, payment_terms
from tests.support.messages import links, start_fast, wait_for_kind, wait_for_offer
from tests.support.stack import Stack, free_port, running_stack

HTTP_TIMEOUT_SECONDS = 1.0
"""The worker's timeout for each call to an outside service, on these stacks."""

FLAKY = {
    "error_rate": 0.1,
    "timeout_rate": 0.1,
    "lost_response_rate": 0.1,
    "timeout_seconds": 1.5,  # longer than the worker waits
    "latency_ms": 5,
    "latency_jitter_ms": 30,
}
FAULTS: dict[str, Any] = {"seed": 20261122, "all": FLAKY}
"""30 % of the calls to every outside service fail, a third each way."""

SETTLE_SECONDS = 100.0
PATIENT = Retry(attempts=40, first_delay=0.2, max_delay=2.0, within=SETTLE_SECONDS)
"""An order system asks again after each 503 while the faults last."""
"""How long every line of a test may take to end, faults and retries included."""

CHAOS_POLICY: dict[str, Any] = {**FAST_POLICY, "offer_valid_days": 60}
"""The fast policy, with offers that stay open while faults delay the apology's delivery."""


@pytest.fixture
async def simulators(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The simulators alone, on a port of their own."""
    port = free_port()
    server = await serve(create_app(tmp_path), "127.0.0.1", port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client
    await server.stop()


def ship(client: httpx.AsyncClient, key: str, timeout: float = 5) -> Any:
    return client.post(
        "/carrier/shipments",
        json={"reference": key, "quantity": 1},
        headers={"Authorization": "Bearer t", "Idempotency-Key": key},
        timeout=timeout,
    )


async def test_fault_settings_are_refused_whole_with_the_field_named(
    simulators: httpx.AsyncClient, tmp_path: Path
) -> None:
    bad = {
        ("body", "all", "error_rate"): {"all": {"error_rate": 1.5}},
        ("body", "carrier", "latency_ms"): {"carrier": {"latency_ms": "20"}},
        ("body", "payments"): {"payments": {"error_rate": 0.6, "lost_response_rate": 0.6}},
        ("body", "all", "timeout_seconds"): {"all": {"timeout_seconds": 0}},
        ("body", "all", "lost_response_mode"): {"all": {"lost_response_mode": "sometimes"}},
        ("body", "printer"): {"printer": {"error_rate": 0.1}},
    }
    for loc, body in bad.items():
        response = await simulators.put("/_faults", json=body)
        assert response.status_code == 422, body
        assert [tuple(error["loc"]) for error in response.json()["detail"]] == [loc]
    assert (await simulators.get("/_faults")).json()["faults"] == {}

    with pytest.raises(FaultConfigError, match=r"BACKORDERS_SIMULATOR_FAULTS: all\.error_rate"):
        faults_from_env({FAULTS_ENV: '{"all": {"error_rate": 2}}'})
    with pytest.raises(FaultConfigError, match="BACKORDERS_SIMULATOR_FAULTS: value: Invalid JSON"):
        faults_from_env({FAULTS_ENV: "error_rate=0.3"})
    started = faults_from_env({FAULTS_ENV: '{"seed": 1, "carrier": {"error_rate": 0.3}}'})
    app = create_app(tmp_path / "other", started)
    assert app.state.faults.snapshot()["faults"]["carrier"]["error_rate"] == 0.3


async def test_each_kind_of_fault_keeps_one_effect_per_key(simulators: httpx.AsyncClient) -> None:
    async def faults(**carrier: Any) -> None:
        # `all` fails everything; the carrier's own entry replaces it.
        body = {"all": {"error_rate": 1.0}, "carrier": carrier}
        assert (await simulators.put("/_faults", json=body)).status_code == 200

    async def recorded(key: str) -> list[dict[str, Any]]:
        rows = (await simulators.get("/carrier/requests")).json()
        return [row for row in rows if row["idempotency_key"] == key]

    await faults(error_rate=1.0)
    failed = await ship(simulators, "k-error")
    assert failed.status_code in (500, 503) and await recorded("k-error") == []

    await faults(lost_response_rate=1.0, lost_response_mode="error")
    lost = await ship(simulators, "k-lost")
    assert lost.status_code == 500 and len(await recorded("k-lost")) == 1

    await faults(lost_response_rate=1.0, lost_response_mode="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await ship(simulators, "k-dropped")
    assert len(await recorded("k-dropped")) == 1

    await faults(timeout_rate=1.0, timeout_seconds=0.6)
    with pytest.raises(httpx.ReadTimeout):
        await ship(simulators, "k-late", timeout=0.2)
    assert await recorded("k-late") == []  # not yet: it lands after the caller gave up
    await asyncio.sleep(0.8)
    assert len(await recorded("k-late")) == 1

    await faults(latency_ms=300)
    started = asyncio.get_running_loop().time()
    assert (await ship(simulators, "k-slow")).status_code == 200
    assert asyncio.get_running_loop().time() - started >= 0.3

    refund = await simulators.post(
        "/payments/refunds",
        json={"reference": "r", "amount": "1.00", "currency": "USD"},
        headers={"Authorization": "Bearer t", "Idempotency-Key": "k-refund"},
    )
    assert refund.status_code in (500, 503)  # `all` still holds for payments
    snapshot = (await simulators.delete("/_faults")).json()
    assert snapshot["faults"] == {}
    assert snapshot["counts"]["carrier"] == {
        "requests": 5,
        "errors": 1,
        "timeouts": 1,
        "lost_responses": 2,
        "delayed": 1,
    }
    assert snapshot["counts"]["payments"]["errors"] == 1

    # Retries with the same keys get the recorded answers; nothing is done twice.
    for key in ("k-lost", "k-dropped", "k-late"):
        [row] = await recorded(key)
        again = await ship(simulators, key)
        assert again.status_code == 200 and again.json() == row["response"]
        assert len(await recorded(key)) == 1
    assert len(await recorded("k-error")) == 0
    assert (await ship(simulators, "k-error")).status_code == 200
    keys = [row["idempotency_key"] for row in (await simulators.get("/carrier/requests")).json()]
    assert sorted(keys) == sorted(["k-lost", "k-dropped", "k-late", "k-slow", "k-error"])


async def test_a_seed_gives_the_same_faults_to_the_same_requests(
    simulators: httpx.AsyncClient,
) -> None:
    faults = {"error_rate": 0.3, "lost_response_rate": 0.3, "lost_response_mode": "error"}
    config = {"seed": 42, "all": faults}

    async def statuses(prefix: str) -> list[int]:
        assert (await simulators.put("/_faults", json=config)).status_code == 200
        return [(await ship(simulators, f"{prefix}-{n}")).status_code for n in range(30)]

    first, second = await statuses("a"), await statuses("b")
    assert first == second
    assert {200, 500} <= set(first)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def chaos(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    """A stack of its own, with a short timeout for outside calls (timeouts are injected)."""
    async with running_stack(
        request.param,
        temporal_env,
        fast_policy=CHAOS_POLICY,
        settings_overrides={"http_timeout_seconds": HTTP_TIMEOUT_SECONDS},
    ) as stack:
        yield stack


async def inject(stack: Stack, faults: dict[str, Any]) -> dict[str, Any]:
    response = await stack.sims.put("/_faults", json=faults)
    assert response.status_code == 200, response.text
    snapshot: dict[str, Any] = response.json()
    return snapshot


async def clear_faults(stack: Stack) -> dict[str, Any]:
    response = await stack.sims.delete("/_faults")
    assert response.status_code == 200, response.text
    snapshot: dict[str, Any] = response.json()
    return snapshot


FINAL = ("shipped", "cancelled")


async def test_thirty_percent_faults_on_every_service_still_give_one_effect_each(
    chaos: Stack,
) -> None:
    stack, draw = chaos, random.Random(7)
    skus = [new_id("sku") for _ in range(4)]
    for sku in skus:
        await stack.put_sku(sku)
    before = (await inject(stack, FAULTS))["counts"]
    orders: list[str] = []
    quantity: dict[str, int] = {}
    demand = dict.fromkeys(skus, 0)
    bodies = []
    for n in range(48):
        order, sku = new_id(), skus[n % len(skus)]
        quantity[order] = draw.randint(1, 3)
        demand[sku] += quantity[order]
        orders.append(order)
        price = f"{draw.randint(5, 40)}.{draw.randint(0, 99):02d}"
        bodies.append(
            backorder(
                order,
                sku,
                quantity[order],
                ship_policy="complete" if n % 6 == 5 else "partial",
                ordered_at=hours_ago(48 - n + draw.random()),
                channel=draw.choice(["web", "amazon", "ebay"]),
                unit_price=price,
                # Captures, voids and refunds under the same faults, lost answers included.
                **payment_terms(order, n, price, quantity[order]),
            )
        )
    try:
        # A surge of lines, ten at a time.
        gate = asyncio.Semaphore(10)

        async def start(body: dict[str, Any]) -> int:
            async with gate:
                return (await stack.start(body)).status_code

        assert await asyncio.gather(*(start(body) for body in bodies)) == [201] * len(bodies)
        for order in orders:
            await stack.wait_line(order, lambda line: line["state"] != "received")
        # Some customers cancel while they wait, others once stock has started to arrive.
        early = orders[3::6]
        late = [order for order in orders[5::10] if order not in early]
        early_answers = await asyncio.gather(
            *(stack.cancel(order, retry=PATIENT) for order in early)
        )
        # 202: accepted, the refund still under way.
        assert {r.status_code for r in early_answers} <= {200, 202}, [r.text for r in early_answers]
        parts = {sku: [demand[sku] // 3, demand[sku] // 3] for sku in skus}
        for sku in skus:
            parts[sku].append(demand[sku] - sum(parts[sku]))
        late_answers: list[httpx.Response] = []
        for step in range(3):
            receipts = [
                stack.receive(sku, parts[sku][step], receipt_id=f"r{step}-{sku}")
                for sku in skus
                if parts[sku][step] > 0
            ]
            assert {r.status_code for r in await asyncio.gather(*receipts)} <= {201}
            if step == 0:
                await asyncio.sleep(0.5)
                late_answers = list(
                    await asyncio.gather(*(stack.cancel(order, retry=PATIENT) for order in late))
                )
            await asyncio.sleep(0.5)

        await settle(
            stack.services.client,
            stack.db,
            [line_key(order, "1") for order in orders],
            within=SETTLE_SECONDS,
        )
        # A call held past its timeout does its effect late: let every such one land first.
        await asyncio.sleep(FLAKY["timeout_seconds"] + 0.5)
        counts = (await stack.sims.get("/_faults")).json()["counts"]
    finally:
        await clear_faults(stack)

    lines = {order: await stack.line(order) for order in orders}
    carrier = by_reference(await stack.requests("carrier"))
    payments = by_reference(await stack.requests("payments"))
    notifications = by_reference(await stack.requests("notifications"))
    keys = [line_key(order, "1") for order in orders]
    with stack.db.reading() as session:
        stored_shipments = session.exec(
            select(ShipmentRow).where(col(ShipmentRow.line_key).in_(keys))
        ).all()
        stored_messages = session.exec(
            select(MessageRow).where(col(MessageRow.line_key).in_(keys))
        ).all()
    shipment_keys = {row.idempotency_key for row in stored_shipments}
    message_keys = {row.idempotency_key for row in stored_messages}

    for order in orders:
        line, key = lines[order], line_key(order, "1")
        assert line["state"] in FINAL, line
        if order in early:
            assert line["state"] == "cancelled"
        # One carrier shipment per allocation step: the keys the line recorded, each once.
        shipped = sorted(carrier.get(key, []), key=lambda row: row["idempotency_key"])
        assert repeated_keys(shipped) == {}
        assert {row["idempotency_key"] for row in shipped} == {
            f"{key}:shipment:{shipment['sequence']}" for shipment in line["shipments"]
        }
        assert {row["idempotency_key"] for row in shipped} == {
            k for k in shipment_keys if k.startswith(f"{key}:")
        }
        assert sorted(row["response"]["tracking_number"] for row in shipped) == sorted(
            shipment["tracking_number"] for shipment in line["shipments"]
        )
        assert sum(row["body"]["quantity"] for row in shipped) == line["shipped_quantity"]
        # Paid in full at order: one refund per cancellation, in full for what did not ship;
        # none for a shipped line. Lines with payment terms: the money checker below.
        refunds = [row for row in payments.get(key, []) if row["path"] == "/refunds"]
        if line["payment"] is None and line["state"] == "shipped":
            assert line["shipped_quantity"] == quantity[order]
            assert refunds == []
        elif line["payment"] is None:
            assert line["shipped_quantity"] < quantity[order]
            assert [row["idempotency_key"] for row in refunds] == [f"{key}:refund"]
            owed = Decimal(line["unit_price"]) * (quantity[order] - line["shipped_quantity"])
            assert Decimal(refunds[0]["body"]["amount"]) == owed
            assert [r["refund_id"] for r in line["refunds"]] == [
                refunds[0]["response"]["refund_id"]
            ]
        # One message per event: no key twice, and the same events the line recorded.
        sent = notifications.get(key, [])
        assert repeated_keys(sent) == {}
        sent_keys = {row["idempotency_key"] for row in sent}
        assert sent_keys == {message["idempotency_key"] for message in line["messages"]}
        assert sent_keys == {k for k in message_keys if k.startswith(f"{key}:")}
        kinds = Counter(row["body"]["kind"] for row in sent)
        # The first message confirms the order: a confirmation, or the delay notice when the
        # line could not keep its date from the start (one message per moment).
        first = min(sent, key=lambda row: row["seq"])["body"]["kind"]
        assert first in ("backorder_confirmation", "delay_notice"), kinds
        assert kinds["backorder_confirmation"] == (first == "backorder_confirmation"), kinds
        final_kind = "shipped" if line["state"] == "shipped" else "cancelled_refunded"
        assert kinds[final_kind] == 1, kinds
        assert kinds["shipped"] + kinds["partially_shipped"] == len(line["shipments"]), kinds
    for order, answers in zip(late, late_answers, strict=True):
        expected = {200: "cancelled", 409: "shipped"}.get(answers.status_code)
        assert expected is None or lines[order]["state"] == expected, (answers.text, lines[order])
    assert all(lines[order]["state"] == "shipped" for order in orders if order not in early + late)
    stack.assert_rules(*skus)
    # Money to the cent for the lines with payment terms: one capture per shipment, a hold given
    # up once on a cancel, charged less refunded equal to the value of what shipped.
    records = await fetch_records(str(stack.sims.base_url).rstrip("/"))
    store = await asyncio.to_thread(read_store, stack.db, keys)
    assert find_problems(records, store) == []
    assert any(
        payments.get(key) and lines[o]["payment"] for o, key in zip(orders, keys, strict=True)
    )
    # The faults really happened, every kind of them, to the busiest services too.
    injected = {
        service: {kind: counts[service][kind] - before[service][kind] for kind in counts[service]}
        for service in counts
    }
    for kind in ("errors", "timeouts", "lost_responses"):
        assert sum(service[kind] for service in injected.values()) > 0, injected
    for service in ("carrier", "notifications"):
        faulted = sum(injected[service][k] for k in ("errors", "timeouts", "lost_responses"))
        assert faulted > 0, injected


async def test_duplicate_receipts_starts_and_clicks_under_faults_act_once(chaos: Stack) -> None:
    stack = chaos
    sku, first, second = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku)
    await inject(stack, FAULTS)
    try:
        # The same start request, five times at once: one workflow, one first message.
        body = backorder(first, sku, 2, ordered_at=hours_ago(2))
        starts = await asyncio.gather(*(stack.start(body) for _ in range(5)))
        assert sorted(r.status_code for r in starts) == [200, 200, 200, 200, 201]
        assert (await stack.start(backorder(second, sku, 2, ordered_at=hours_ago(1)))).is_success
        await stack.wait_state(first, "waiting")
        await stack.wait_state(second, "waiting")

        # The same receipt, five times at once: allocated once (2 to the first, 1 to the second).
        receipts = await asyncio.gather(
            *(stack.receive(sku, 3, receipt_id=f"dup-{sku}") for _ in range(5))
        )
        assert sorted(r.status_code for r in receipts) == [200, 200, 200, 200, 201]
        shipped_first = await stack.finished(first, within=SETTLE_SECONDS)
        partial = await stack.wait_line(
            second, lambda line: line["shipped_quantity"] == 1, within=SETTLE_SECONDS
        )
        assert (await stack.receive(sku, 1)).status_code == 201
        shipped_second = await stack.finished(second, within=SETTLE_SECONDS)

        # The same customer link, clicked four times at once: one refund, one code.
        waiting, offered = new_id(), new_id()
        assert (await stack.start(backorder(waiting, sku))).status_code == 201
        # Nothing inbound dates it: its first message is the notice, with the cancel link.
        notice = await wait_for_kind(stack, waiting, "delay_notice", within=30)
        cancel_link = links(notice)[("cancel", None)]
        cancel_clicks = await asyncio.gather(
            *(stack.api.post(f"/v1/links/{cancel_link}") for _ in range(4))
        )
        cancelled = await stack.finished(waiting, within=SETTLE_SECONDS)

        await start_fast(stack, offered, sku, ship_in=4, eta_in=14)
        apology = await wait_for_offer(stack, offered, "apology-1", within=30)
        offer_link = links(apology)[("accept_offer", "apology-1")]
        offer_clicks = await asyncio.gather(
            *(stack.api.post(f"/v1/links/{offer_link}") for _ in range(4))
        )
        accepted = await wait_for_kind(stack, offered, "offer_accepted", within=SETTLE_SECONDS)
        assert (await stack.receive(sku, 1)).status_code == 201
        await stack.finished(offered, within=SETTLE_SECONDS)
        await asyncio.sleep(FLAKY["timeout_seconds"] + 0.5)  # late effects land
    finally:
        await clear_faults(stack)

    first_key, second_key = line_key(first, "1"), line_key(second, "1")
    runs = [
        run
        async for run in stack.services.client.list_workflows(
            f"WorkflowId = '{line_key(first, '1')}'"
        )
    ]
    assert len(runs) == 1
    notes = await stack.requests("notifications", first_key)
    assert [row["body"]["kind"] for row in notes] == ["delay_notice", "shipped"]

    assert partial["shipments"][0]["quantity"] == 1
    assert [s["quantity"] for s in shipped_first["shipments"]] == [2]
    assert [s["quantity"] for s in shipped_second["shipments"]] == [1, 1]
    carrier = await stack.requests("carrier")
    quantities = [row["body"]["quantity"] for row in carrier if row["body"].get("sku") == sku]
    assert sorted(quantities) == [1, 1, 1, 2]
    assert repeated_keys(carrier) == {}
    assert len(await stack.requests("carrier", first_key)) == 1
    assert len(await stack.requests("carrier", second_key)) == 2
    sku_row = await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))
    assert sku_row.json()["free_stock"] == 0
    stack.assert_rules(sku)

    assert all(click.status_code in (200, 202, 409) for click in cancel_clicks), [
        click.text for click in cancel_clicks
    ]
    assert any(click.status_code in (200, 202) for click in cancel_clicks)
    assert cancelled["state"] == "cancelled"
    waiting_key = line_key(waiting, "1")
    assert len(await stack.requests("payments", waiting_key)) == 1
    kinds = [row["body"]["kind"] for row in await stack.requests("notifications", waiting_key)]
    assert kinds == ["delay_notice", "cancelled_refunded"]

    assert sorted(click.status_code for click in offer_clicks) == [200, 409, 409, 409], [
        click.text for click in offer_clicks
    ]
    codes = await stack.requests("storefront", line_key(offered, "1"))
    assert len(codes) == 1
    assert codes[0]["response"]["code"] in accepted["body"]["body"]
    offered_notes = await stack.requests("notifications", line_key(offered, "1"))
    offered_kinds = Counter(row["body"]["kind"] for row in offered_notes)
    assert offered_kinds["offer_accepted"] == 1
    # Made once: in an apology, or in the notice due at the same moment.
    assert sum(("accept_offer", "apology-1") in links(row) for row in offered_notes) == 1
