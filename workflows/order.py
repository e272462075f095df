"""ShipCompleteOrderWorkflow: the backordered lines of a ship-complete order leave together."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from domain.contract.lines import ORDER_CHANGED, ORDER_SHIPPED, line_key
from domain.contract.orders import (
    CREATE_ORDER_SHIPMENT,
    LINE_JOINED,
    LINE_READY,
    ORDER_STATUS,
    ORDER_WORKFLOW,
    WITHDRAW,
)
from domain.line.effects import ShipmentRecord
from domain.orders import (
    LineReady,
    OrderChange,
    OrderInput,
    OrderShipmentInput,
    OrderShipped,
    OrderStatus,
    Withdraw,
)
from domain.requests import InStockLine
from workflows.calls import execute, signal


@workflow.defn(name=ORDER_WORKFLOW.name)
class ShipCompleteOrderWorkflow:
    """Holds a ship-complete order's lines until every one still in it has all its stock, then
    books one shipment (with the order's in-stock lines) and tells each line its tracking.

    Signals:
        line_joined(line_id): a line started (the signal-with-start that creates this workflow).
        line_ready(LineReady): a line has all its stock and waits for the others.
    Updates:
        withdraw(Withdraw) -> bool: a line is being cancelled. Refused once the shipment is under
            way (the line's units are leaving). The others are told; by policy they still ship
            together (default) or each on its own.
    Queries:
        status() -> OrderStatus: lines, ready, withdrawn, tracking number.
    """

    @workflow.init
    def __init__(self, order: OrderInput) -> None:
        self._order = order
        self._ready: dict[str, LineReady] = {}
        self._withdrawn: set[str] = set()
        self._released = False
        self._shipping = False
        self._shipment: ShipmentRecord | None = None
        self._refused: list[str] = []

    def _remaining(self) -> set[str]:
        return set(self._order.line_ids) - self._withdrawn

    @workflow.run
    async def run(self, order: OrderInput) -> ShipmentRecord | None:
        await workflow.wait_condition(
            lambda: self._released or self._remaining() <= set(self._ready)
        )
        ready = [self._ready[line] for line in sorted(self._remaining()) if line in self._ready]
        items = [InStockLine(sku=line.sku, quantity=line.quantity) for line in ready]
        items += order.in_stock_lines
        if self._released:
            ready = []  # every remaining line ships on its own
            items = list(order.in_stock_lines)
        if items:
            self._shipping = True
            self._shipment = await execute(
                CREATE_ORDER_SHIPMENT,
                OrderShipmentInput(
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    items=items,
                    line_ids=[line.line_id for line in ready],
                ),
                summary=f"one shipment: {sum(item.quantity for item in items)} units",
            )
            for line in ready:
                await signal(
                    self._line(line.line_id), ORDER_SHIPPED, OrderShipped(shipment=self._shipment)
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._shipment

    def _line(self, line_id: str) -> workflow.ExternalWorkflowHandle[object]:
        key = line_key(self._order.order_id, line_id)
        return workflow.get_external_workflow_handle(key)

    def payload_refused(self, signal: str, reason: str) -> None:
        """A signal's payload could not be used (`domain.contract.Signal.handler`)."""
        self._refused.append(f"{signal}: {reason}")
        workflow.set_current_details("refused: " + "; ".join(self._refused[-5:]))

    @LINE_JOINED.handler
    def line_joined(self, line_id: str) -> None:
        """Nothing to do: joining only makes sure this workflow exists."""

    @LINE_READY.handler
    def line_ready(self, ready: LineReady) -> None:
        if ready.line_id not in self._withdrawn:
            self._ready[ready.line_id] = ready

    @WITHDRAW.handler
    async def withdraw(self, request: Withdraw) -> bool:
        self._withdrawn.add(request.line_id)
        self._ready.pop(request.line_id, None)
        release = not self._order.keep_together_on_cancel
        for line in sorted(self._remaining()):
            try:
                await signal(
                    self._line(line),
                    ORDER_CHANGED,
                    OrderChange(cancelled_line=request.line_id, released=release),
                )
            except FailureError:
                # A line the order named that never started, or that already ended, has
                # nothing to hear; the withdrawal must not fail for it.
                workflow.logger.info("line %s of order %s not told", line, self._order.order_id)
        self._released = self._released or release
        return True

    @withdraw.validator
    def _validate_withdraw(self, request: Withdraw) -> None:
        if self._shipping:
            raise ApplicationError("the order's shipment is already under way")

    @ORDER_STATUS.handler
    def status(self) -> OrderStatus:
        return OrderStatus(
            lines=self._order.line_ids,
            ready=sorted(self._ready),
            withdrawn=sorted(self._withdrawn),
            tracking_number=self._shipment.tracking_number if self._shipment else None,
        )
