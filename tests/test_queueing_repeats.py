"""Queueing a line asked again: the run that queued it is told what it was told first.

A line queues itself with a local activity, which runs again when the workflow task that ran
it is lost; the steps that task took after queueing (a cancel, stock from an arrival) must not
show in what the run is told of its line's start. Another run of the same workflow id is told
the line as the store has it now. On both stores.

The records of a line's effects asked again likewise: a message, a shipment's plan and a
shipment are recorded once under their key, and a repeat answers what the first recorded (the
store writes these rows with Core statements, not through the ORM).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.contract.lines import line_key
from domain.line.effects import ReleaseInput
from domain.line.input import LineInput
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.policy import DEFAULT_POLICY
from domain.requests import BackorderRequest, Customer, ReceiptRequest, SkuRequest
from domain.stock import ReceiptInput, SkuInput
from domain.values import Channel, canonical_hash
from store import audit, locations, records, stock
from store.db import Database
from store.tables import MessageRow, ShipmentRow
from tests.support.factories import new_id
from tests.support.stack import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="backorders-queueing-") as folder:
        url, drop = fresh_database(request.param, Path(folder))
        database = Database(url)
        database.create_schema()
        try:
            yield database
        finally:
            database.dispose()
            drop()


def _line(sku: str, quantity: int) -> LineInput:
    request = BackorderRequest(
        order_id=new_id(),
        line_id="1",
        sku=sku,
        quantity=quantity,
        unit_price="10.00",
        currency="USD",
        channel=Channel.WEB,
        customer=Customer(id="c1", email="c1@example.com"),
        ordered_at=datetime.now(UTC),
    )
    return LineInput(
        request=request,
        ship_by=request.ordered_at + timedelta(days=3),
        request_hash=canonical_hash(request),
        policy=DEFAULT_POLICY.for_channel(Channel.WEB),
    )


def _sku(db: Database, free_stock: int) -> str:
    sku = new_id("sku")
    request = SkuRequest(name=sku, free_stock=free_stock)
    stock.apply_sku(db, SkuInput(sku=sku, request=request, request_hash=canonical_hash(request)))
    return sku


def _receive(db: Database, sku: str, quantity: int) -> None:
    receipt = ReceiptRequest(receipt_id=new_id("r"), sku=sku, quantity=quantity)
    stock.record_receipt(
        db,
        ReceiptInput(supplier_id="acme", receipt=receipt, request_hash=canonical_hash(receipt)),
    )


def test_the_same_run_is_answered_the_first_answer_after_a_cancel(db: Database) -> None:
    sku = _sku(db, free_stock=1)
    line = _line(sku, quantity=3)
    key = line_key(line.request.order_id, "1")
    first = stock.record_line(db, line, run_id="run-1")
    assert (first.allocated_quantity, first.state) == (1, LineState.PARTIALLY_ALLOCATED)

    # What the lost task went on to do: the line was cancelled, its unit went back.
    stock.release_line(db, ReleaseInput(line_key=key, sku=sku, reason="test"))

    again = stock.record_line(db, line, run_id="run-1")
    assert again == first
    later_run = stock.record_line(db, line, run_id="run-2")
    assert later_run.state is LineState.CANCELLED


def test_the_same_run_is_not_told_of_stock_that_came_after(db: Database) -> None:
    sku = _sku(db, free_stock=0)
    line = _line(sku, quantity=2)
    first = stock.record_line(db, line, run_id="run-1")
    assert (first.allocated_quantity, first.allocations) == (0, [])

    _receive(db, sku, 2)  # the arrival signals the line; the run counts it from the signal

    assert stock.record_line(db, line, run_id="run-1") == first
    now = stock.record_line(db, line, run_id="run-2")
    assert now.allocated_quantity == 2
    assert [notice.quantity for notice in now.allocations] == [2]
    # The later run's answer is the one its repeats are given.
    _receive(db, sku, 1)
    assert stock.record_line(db, line, run_id="run-2") == now


def test_without_a_run_the_answer_is_the_line_as_it_is_now(db: Database) -> None:
    sku = _sku(db, free_stock=0)
    line = _line(sku, quantity=1)
    stock.record_line(db, line)
    _receive(db, sku, 1)
    assert stock.record_line(db, line).allocated_quantity == 1


def _message(key: str, subject: str) -> MessageRow:
    return MessageRow(
        idempotency_key=key,
        line_key="backorder:x:1",
        kind=MessageKind.SHIPPED,
        recipient="c1@example.com",
        subject=subject,
        body=f"{subject}.",
    )


def test_a_message_is_recorded_once_and_found(db: Database) -> None:
    key = f"backorder:{new_id()}:1:message:shipped"
    assert records.find_message(db, key) is None
    first = records.record_message(db, _message(key, "first"))
    assert records.record_message(db, _message(key, "second")) == first
    assert records.find_message(db, key) == first
    assert records.find_message_for(db, key, "any") == (first, None)
    assert first.subject == "first"


def test_a_shipment_is_planned_and_recorded_once(db: Database) -> None:
    sku = _sku(db, 0)
    assert records.sku_name(db, sku) == sku
    assert records.sku_name(db, new_id("sku")) is None
    line_input = _line(sku, 2)
    line = line_key(line_input.request.order_id, "1")
    stock.record_line(db, line_input, run_id="run-1")
    _receive(db, sku, 2)
    key = f"{line}:shipment:1"
    assert records.find_shipment(db, key) is None
    assert records.find_message_for(db, f"{line}:message:x", sku) == (None, sku)
    plan = records.find_or_plan_shipment(db, line_key=line, key=key, quantity=2)
    assert plan == ("main", 2)
    assert locations.plan_line_shipment(db, line, key, 1) == plan
    assert locations.plan_line_shipment(db, "backorder:unknown:1", "k", 3) == ("main", 3)
    rows = [
        ShipmentRow(
            idempotency_key=key,
            line_key=line,
            sequence=1,
            quantity=2,
            tracking_number=tracking,
            carrier_shipment_id=tracking,
            origin="main",
        )
        for tracking in ("T-1", "T-2")
    ]
    first = records.record_shipment(db, line_key=line, sku=sku, row=rows[0])
    assert records.record_shipment(db, line_key=line, sku=sku, row=rows[1]) == first
    assert records.find_shipment(db, key) == first
    assert records.find_or_plan_shipment(db, line_key=line, key=key, quantity=2) == first
    # A repeat is answered even for a line the store does not know; a new shipment is not.
    unknown = "backorder:unknown:1"
    assert records.record_shipment(db, line_key=unknown, sku=sku, row=rows[1]) == first
    other = rows[1].model_copy(update={"idempotency_key": f"{unknown}:shipment:1"})
    with pytest.raises(stock.LineNotFoundError):
        records.record_shipment(db, line_key=unknown, sku=sku, row=other)
    status = records.get_line_status(db, line)
    assert status is not None
    assert (status.shipped_quantity, status.state) == (2, LineState.SHIPPED)
    assert audit.broken_rules(db, sku) == []
