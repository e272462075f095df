"""The contract of a ship-complete order: the lines of one order leave in one shipment.

workflow  ShipCompleteOrderWorkflow, id `order:{order_id}`, which its lines join
signals   line_joined (the signal-with-start), line_ready
update    withdraw
query     status
"""

from __future__ import annotations

from typing import Any

from domain.contract import Activity, Query, Signal, Update, WorkflowType
from domain.contract.options import RETRY, SERVICE_TIMEOUT, STORE_TIMEOUT
from domain.line.effects import ShipmentRecord
from domain.orders import (
    JoinOrder,
    LineReady,
    OrderInput,
    OrderShipmentInput,
    OrderStatus,
    Withdraw,
)

_SHIPMENT_OR_NONE: Any = ShipmentRecord | None
ORDER_WORKFLOW: WorkflowType[OrderInput, ShipmentRecord | None] = WorkflowType(
    "ShipCompleteOrderWorkflow", OrderInput, _SHIPMENT_OR_NONE
)


def order_workflow_id(order_id: str) -> str:
    """One workflow per ship-complete order, which its lines join."""
    return f"order:{order_id}"


LINE_JOINED = Signal("line_joined", str)
"""A line started (the signal-with-start that creates the order's workflow); nothing to do."""
LINE_READY = Signal("line_ready", LineReady)
"""One of the order's lines has all its stock."""
WITHDRAW = Update("withdraw", Withdraw, bool)
"""A line is being cancelled; refused once the order's shipment is under way."""
ORDER_STATUS = Query("status", OrderStatus)

JOIN_ORDER = Activity(
    "join_order", JoinOrder, type(None), start_to_close=STORE_TIMEOUT, retry=RETRY
)
WITHDRAW_FROM_ORDER = Activity("withdraw_from_order", Withdraw, bool, STORE_TIMEOUT, RETRY)
CREATE_ORDER_SHIPMENT = Activity(
    "create_order_shipment", OrderShipmentInput, ShipmentRecord, SERVICE_TIMEOUT, RETRY
)
