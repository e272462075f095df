"""Workflows. They import only temporalio, the standard library and `domain`: no I/O here."""

from workflows.backorder_line import BackorderLineWorkflow
from workflows.order import ShipCompleteOrderWorkflow
from workflows.stock import PurchaseOrderWorkflow, ReceiptWorkflow, SkuUpdateWorkflow

WORKFLOWS = [
    BackorderLineWorkflow,
    ReceiptWorkflow,
    SkuUpdateWorkflow,
    PurchaseOrderWorkflow,
    ShipCompleteOrderWorkflow,
]

__all__ = [
    "WORKFLOWS",
    "BackorderLineWorkflow",
    "PurchaseOrderWorkflow",
    "ReceiptWorkflow",
    "ShipCompleteOrderWorkflow",
    "SkuUpdateWorkflow",
]
