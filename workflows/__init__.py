"""Workflows. They import only temporalio, the standard library and `domain`: no I/O here."""

from workflows.backorder_line import BackorderLineWorkflow
from workflows.stock import ReceiptWorkflow, SkuUpdateWorkflow

WORKFLOWS = [BackorderLineWorkflow, ReceiptWorkflow, SkuUpdateWorkflow]

__all__ = ["WORKFLOWS", "BackorderLineWorkflow", "ReceiptWorkflow", "SkuUpdateWorkflow"]
