"""Every workflow the worker runs."""

from workflows.line.workflow import BackorderLineWorkflow
from workflows.order import ShipCompleteOrderWorkflow
from workflows.stock import PurchaseOrderWorkflow, ReceiptWorkflow, SkuUpdateWorkflow
from workflows.survey import LineSurveyWorkflow, SurveySweepWorkflow

WORKFLOWS = [
    BackorderLineWorkflow,
    ReceiptWorkflow,
    SkuUpdateWorkflow,
    PurchaseOrderWorkflow,
    ShipCompleteOrderWorkflow,
    LineSurveyWorkflow,
    SurveySweepWorkflow,
]
