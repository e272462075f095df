"""The stock workflows (receipt, catalog update, purchase order) and the ship-complete order's
workflow on their own, over stub activities (and stub lines) registered under the contract's
names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.contract.lines import LINE_WORKFLOW, ORDER_CHANGED, ORDER_SHIPPED, line_key
from domain.contract.orders import (
    CREATE_ORDER_SHIPMENT,
    LINE_READY,
    ORDER_STATUS,
    ORDER_WORKFLOW,
    WITHDRAW,
    order_workflow_id,
)
from domain.contract.stock import (
    ALERT_SUBSCRIBERS,
    APPLY_PURCHASE_ORDER,
    APPLY_SKU,
    PURCHASE_ORDER_WORKFLOW,
    RECEIPT_WORKFLOW,
    RECORD_RECEIPT,
    REFRESH_ETAS,
    SIGNAL_ALLOCATIONS,
    SKU_UPDATE_WORKFLOW,
)
from domain.line.effects import ShipmentRecord
from domain.orders import LineReady, OrderInput, OrderShipmentInput, OrderStatus, Withdraw
from domain.requests import InStockLine, PurchaseOrderRequest, ReceiptRequest, SkuRequest
from domain.stock import (
    AllocationNotice,
    PurchaseOrderInput,
    ReceiptInput,
    RefreshEtas,
    SignalAllocationsInput,
    SkuInput,
    StockResult,
)
from workflows.order import ShipCompleteOrderWorkflow
from workflows.stock import PurchaseOrderWorkflow, ReceiptWorkflow, SkuUpdateWorkflow


@dataclass
class StubStock:
    """Stock activities that answer from what the test set and record what they were asked."""

    allocations: list[AllocationNotice] = field(default_factory=list)
    free_stock: int = 0
    calls: list[str] = field(default_factory=list)
    signalled: list[AllocationNotice] = field(default_factory=list)
    shipments: list[OrderShipmentInput] = field(default_factory=list)

    def _result(self, sku: str) -> StockResult:
        return StockResult(sku=sku, allocations=self.allocations, free_stock=self.free_stock)

    @RECORD_RECEIPT.defn
    async def record_receipt(self, receipt: ReceiptInput) -> StockResult:
        self.calls.append("record_receipt")
        return self._result(receipt.receipt.sku)

    @APPLY_SKU.defn
    async def apply_sku(self, sku: SkuInput) -> StockResult:
        self.calls.append("apply_sku")
        return self._result(sku.sku)

    @APPLY_PURCHASE_ORDER.defn
    async def apply_purchase_order(self, change: PurchaseOrderInput) -> None:
        self.calls.append("apply_purchase_order")

    @SIGNAL_ALLOCATIONS.defn
    async def signal_allocations(self, batch: SignalAllocationsInput) -> int:
        self.calls.append("signal_allocations")
        self.signalled += batch.allocations
        return len(batch.allocations)

    @REFRESH_ETAS.defn
    async def refresh_etas(self, refresh: RefreshEtas) -> datetime | None:
        self.calls.append(f"refresh_etas:{refresh.sku}")
        return None

    @ALERT_SUBSCRIBERS.defn
    async def alert_subscribers(self, sku: str) -> int:
        self.calls.append("alert_subscribers")
        return 0

    @CREATE_ORDER_SHIPMENT.defn
    async def create_order_shipment(self, order: OrderShipmentInput) -> ShipmentRecord:
        self.shipments.append(order)
        return ShipmentRecord(
            sequence=1,
            quantity=sum(item.quantity for item in order.items),
            tracking_number="TRACK-ORDER",
            carrier_shipment_id="SHIP-ORDER",
            expedited=False,
            created_at=datetime.now(UTC),
        )


@workflow.defn(name=LINE_WORKFLOW.name)
class StubLine:
    """A line that only records what its order tells it."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: "done" in self.heard)
        return self.heard

    @workflow.signal(name=ORDER_SHIPPED.name)
    def order_shipped(self, shipped: RawValue) -> None:
        self.heard.append(ORDER_SHIPPED.name)

    @workflow.signal(name=ORDER_CHANGED.name)
    def order_changed(self, change: RawValue) -> None:
        self.heard.append(ORDER_CHANGED.name)

    @workflow.signal(name="done")
    def done(self) -> None:
        self.heard.append("done")


def notice(number: int) -> AllocationNotice:
    return AllocationNotice(
        allocation_id=number,
        line_key=f"backorder:o{number}:1",
        order_id=f"o{number}",
        line_id="1",
        quantity=1,
        source="receipt:acme:r1",
    )


async def run_stock(env: WorkflowEnvironment, stub: StubStock, kind: str) -> StockResult | None:
    queue = f"stock-test-{uuid.uuid4().hex[:8]}"
    unique = uuid.uuid4().hex[:8]
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ReceiptWorkflow, SkuUpdateWorkflow, PurchaseOrderWorkflow],
        activities=[
            stub.record_receipt,
            stub.apply_sku,
            stub.apply_purchase_order,
            stub.signal_allocations,
            stub.refresh_etas,
            stub.alert_subscribers,
        ],
    ):
        if kind == "receipt":
            receipt = ReceiptRequest(receipt_id=f"r{unique}", sku="SKU-1", quantity=3)
            received: StockResult = await env.client.execute_workflow(
                RECEIPT_WORKFLOW.name,
                ReceiptInput(supplier_id="acme", receipt=receipt, request_hash="h"),
                id=f"receipt-test-{unique}",
                task_queue=queue,
                result_type=StockResult,
            )
            return received
        if kind == "sku":
            updated: StockResult = await env.client.execute_workflow(
                SKU_UPDATE_WORKFLOW.name,
                SkuInput(sku="SKU-1", request=SkuRequest(name="Kettle"), request_hash="h"),
                id=f"sku-test-{unique}",
                task_queue=queue,
                result_type=StockResult,
            )
            return updated
        order = PurchaseOrderRequest(
            sku="SKU-1", quantity=5, expected_at=datetime.now(UTC) + timedelta(days=3)
        )
        await env.client.execute_workflow(
            PURCHASE_ORDER_WORKFLOW.name,
            PurchaseOrderInput(supplier_id="acme", po_id=f"po{unique}", order=order),
            id=f"po-test-{unique}",
            task_queue=queue,
        )
        return None


async def test_a_receipt_tells_every_allocated_line_then_redates_the_queue(
    temporal_env: WorkflowEnvironment,
) -> None:
    stub = StubStock(allocations=[notice(1), notice(2)])
    result = await run_stock(temporal_env, stub, "receipt")
    assert result is not None and len(result.allocations) == 2
    assert stub.calls == ["record_receipt", "signal_allocations", "refresh_etas:SKU-1"]
    assert stub.signalled == [notice(1), notice(2)]


async def test_stock_left_free_after_an_update_alerts_the_subscribers(
    temporal_env: WorkflowEnvironment,
) -> None:
    stub = StubStock(free_stock=4)
    await run_stock(temporal_env, stub, "sku")
    # Nothing allocated: no line to tell, but the free stock is news for subscribers.
    assert stub.calls == ["apply_sku", "refresh_etas:SKU-1", "alert_subscribers"]


async def test_a_purchase_order_is_recorded_then_the_queue_redated(
    temporal_env: WorkflowEnvironment,
) -> None:
    stub = StubStock()
    await run_stock(temporal_env, stub, "po")
    assert stub.calls == ["apply_purchase_order", "refresh_etas:SKU-1"]


async def test_an_order_ships_once_every_remaining_line_is_ready_and_tells_each(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Three lines; one withdraws (the others hear of it), the two left become ready: one
    shipment carries them and the in-stock line, and each ready line hears it shipped."""
    stub = StubStock()
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    queue = f"order-test-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ShipCompleteOrderWorkflow, StubLine],
        activities=[stub.create_order_shipment],
    ):
        lines = {
            line_id: await client.start_workflow(
                StubLine.run, id=line_key(order_id, line_id), task_queue=queue
            )
            for line_id in ("1", "2", "3")
        }
        order = await client.start_workflow(
            ORDER_WORKFLOW.name,
            OrderInput(
                order_id=order_id,
                line_ids=["1", "2", "3"],
                in_stock_lines=[InStockLine(sku="IN-STOCK", quantity=1)],
                customer_id="c1",
            ),
            id=order_workflow_id(order_id),
            task_queue=queue,
            result_type=ShipmentRecord,
        )
        assert await order.execute_update(
            WITHDRAW.name, Withdraw(order_id=order_id, line_id="3"), result_type=bool
        )
        for line_id, sku in (("1", "A"), ("2", "B")):
            await order.signal(LINE_READY.name, LineReady(line_id=line_id, sku=sku, quantity=2))
        shipment = await order.result()
        status = await order.query(ORDER_STATUS.name, result_type=OrderStatus)
        heard = {}
        for line_id, handle in lines.items():
            await handle.signal("done")
            heard[line_id] = await handle.result()
    assert shipment.quantity == 5
    assert [item.sku for item in stub.shipments[0].items] == ["A", "B", "IN-STOCK"]
    assert (status.withdrawn, status.tracking_number) == (["3"], "TRACK-ORDER")
    assert heard["1"] == heard["2"] == [ORDER_CHANGED.name, ORDER_SHIPPED.name, "done"]
    assert heard["3"] == ["done"]


async def test_a_line_can_leave_an_order_that_names_a_line_never_started(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Found by fuzzing: withdrawing told every other line, and one that never started made
    the withdrawal fail, so the cancel of the line that asked never happened."""
    stub = StubStock()
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    queue = f"order-test-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ShipCompleteOrderWorkflow, StubLine],
        activities=[stub.create_order_shipment],
    ):
        order = await client.start_workflow(
            ORDER_WORKFLOW.name,
            OrderInput(order_id=order_id, line_ids=["1", "2"], in_stock_lines=[], customer_id="c"),
            id=order_workflow_id(order_id),
            task_queue=queue,
        )
        assert await order.execute_update(
            WITHDRAW.name, Withdraw(order_id=order_id, line_id="1"), result_type=bool
        )
        status = await order.query(ORDER_STATUS.name, result_type=OrderStatus)
    assert status.withdrawn == ["1"]
