"""Every workflow the worker runs."""

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
