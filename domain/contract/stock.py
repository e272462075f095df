"""The contract of stock and supply: arrivals, catalog updates, purchase orders and ETAs.

workflows  ReceiptWorkflow (`receipt:{supplier}:{receipt}`), SkuUpdateWorkflow,
           PurchaseOrderWorkflow; all on the stock task queue (`stock_task_queue`)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.contract import Activity, WorkflowType
from domain.contract.options import FAN_OUT_TIMEOUT, HEARTBEAT_TIMEOUT, RETRY, STORE_TIMEOUT
from domain.stock import (
    PurchaseOrderInput,
    ReceiptInput,
    RefreshEtas,
    SignalAllocationsInput,
    SignalReleaseMoves,
    SignalShipBeforeRelease,
    SkuInput,
    StockResult,
)

RECEIPT_WORKFLOW = WorkflowType("ReceiptWorkflow", ReceiptInput, StockResult)
SKU_UPDATE_WORKFLOW = WorkflowType("SkuUpdateWorkflow", SkuInput, StockResult)
PURCHASE_ORDER_WORKFLOW = WorkflowType("PurchaseOrderWorkflow", PurchaseOrderInput, type(None))

RECEIPT_PREFIX = "receipt:"


def receipt_workflow_id(supplier_id: str, receipt_id: str) -> str:
    """One workflow per supplier receipt: a receipt reported twice is counted once."""
    return f"{RECEIPT_PREFIX}{supplier_id}:{receipt_id}"


def sku_update_workflow_id(sku: str, unique: str) -> str:
    """A catalog update runs as a workflow so that the allocations it makes reach the lines."""
    return f"sku:{sku}:{unique}"


def purchase_order_workflow_id(supplier_id: str, po_id: str, unique: str) -> str:
    """A purchase order's change runs as a workflow that re-dates the lines waiting for it."""
    return f"po:{supplier_id}:{po_id}:{unique[:16]}"


RECORD_RECEIPT = Activity(
    "record_receipt", ReceiptInput, StockResult, start_to_close=STORE_TIMEOUT, retry=RETRY
)
"""Add an arrival to stock and split it over the queue, once per receipt id."""
APPLY_SKU = Activity("apply_sku", SkuInput, StockResult, STORE_TIMEOUT, RETRY)
APPLY_PURCHASE_ORDER = Activity(
    "apply_purchase_order", PurchaseOrderInput, type(None), STORE_TIMEOUT, RETRY
)

_ETA: Any = datetime | None
REFRESH_ETAS: Activity[RefreshEtas, datetime | None] = Activity(
    "refresh_etas", RefreshEtas, _ETA, FAN_OUT_TIMEOUT, RETRY, heartbeat=HEARTBEAT_TIMEOUT
)
"""Recompute a SKU's ETAs; lines whose ETA moved are signalled; answers `for_line`'s ETA."""
SIGNAL_ALLOCATIONS = Activity(
    "signal_allocations",
    SignalAllocationsInput,
    int,
    FAN_OUT_TIMEOUT,
    RETRY,
    heartbeat=HEARTBEAT_TIMEOUT,
)
"""Tell each allocated line of its stock (a workflow may not hold thousands of signals)."""
SIGNAL_RELEASE_MOVES = Activity(
    "signal_release_moves",
    SignalReleaseMoves,
    int,
    FAN_OUT_TIMEOUT,
    RETRY,
    heartbeat=HEARTBEAT_TIMEOUT,
)
"""Tell each preorder line whose release moved later (signal `release_moved`)."""
SIGNAL_SHIP_BEFORE_RELEASE = Activity(
    "signal_ship_before_release",
    SignalShipBeforeRelease,
    int,
    FAN_OUT_TIMEOUT,
    RETRY,
    heartbeat=HEARTBEAT_TIMEOUT,
)
"""Tell each open preorder line of a SKU that now ships before its release, in queue order
(signal `ship_before_release`)."""
ALERT_SUBSCRIBERS = Activity(
    "alert_subscribers", str, int, FAN_OUT_TIMEOUT, RETRY, heartbeat=HEARTBEAT_TIMEOUT
)
"""One back-in-stock message per subscription of a SKU that has free stock now."""
