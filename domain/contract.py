"""Names shared by every process of the service: the API, the worker, the CLI and the client.

A workflow id, a signal name or a search-attribute key that two processes spell differently is a
bug that only shows in production, so they are all spelled once, here.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeKey,
)

TASK_QUEUE = "backorders"
"""Default task queue; `BACKORDERS_TASK_QUEUE` overrides it (tests give each stack its own)."""


def stock_task_queue(task_queue: str) -> str:
    """The task queue of receipts, catalog updates and purchase orders, beside the lines' own:
    a receipt that wakes a thousand lines must not wait behind their tasks to wake the next
    thousand (README: Performance)."""
    return f"{task_queue}-stock"


# Workflow type names, fixed so that renaming a Python class never orphans running workflows.
BACKORDER_LINE_WORKFLOW = "BackorderLineWorkflow"
RECEIPT_WORKFLOW = "ReceiptWorkflow"
SKU_UPDATE_WORKFLOW = "SkuUpdateWorkflow"

# Messages a BackorderLineWorkflow accepts.
SIGNAL_ALLOCATED = "allocated"
"""Stock was allocated to the line in the store (payload: `AllocationNotice`)."""
UPDATE_CANCEL = "cancel"
"""Cancel the line before it ships; answers with what was released and refunded."""
QUERY_STATUS = "status"
"""The line as the workflow sees it (`LineStatus`)."""


def backorder_workflow_id(order_id: str, line_id: str) -> str:
    """One workflow per backordered line: the id makes a duplicate start impossible."""
    return f"backorder:{order_id}:{line_id}"


RECEIPT_PREFIX = "receipt:"


def receipt_workflow_id(supplier_id: str, receipt_id: str) -> str:
    """One workflow per supplier receipt: a receipt reported twice is counted once."""
    return f"{RECEIPT_PREFIX}{supplier_id}:{receipt_id}"


def sku_update_workflow_id(sku: str, unique: str) -> str:
    """A catalog update runs as a workflow so that the allocations it makes reach the lines."""
    return f"sku:{sku}:{unique}"


def line_key(order_id: str, line_id: str) -> str:
    """The store's primary key of a line; the same text as the workflow id, by design."""
    return backorder_workflow_id(order_id, line_id)


# Custom search attributes: what operations filter on in the Temporal UI.
SA_ORDER_ID = SearchAttributeKey.for_keyword("BackorderOrderId")
SA_SKU = SearchAttributeKey.for_keyword("BackorderSku")
SA_CHANNEL = SearchAttributeKey.for_keyword("BackorderChannel")
SA_STATE = SearchAttributeKey.for_keyword("BackorderState")
SA_SHIP_BY = SearchAttributeKey.for_datetime("BackorderShipBy")
SA_ESCALATION_LEVEL = SearchAttributeKey.for_int("BackorderEscalationLevel")
SA_CUSTOMER_TIER = SearchAttributeKey.for_keyword("BackorderCustomerTier")
SA_RECEIPT_ID = SearchAttributeKey.for_keyword("BackorderReceiptId")

SEARCH_ATTRIBUTE_KEYS: list[SearchAttributeKey[Any]] = [
    SA_ORDER_ID,
    SA_SKU,
    SA_CHANNEL,
    SA_STATE,
    SA_SHIP_BY,
    SA_ESCALATION_LEVEL,
    SA_CUSTOMER_TIER,
    SA_RECEIPT_ID,
]
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
    for key in SEARCH_ATTRIBUTE_KEYS
}
"""Name -> type, as `temporal server start-dev --search-attribute Name=Type` takes them."""

MEMO_REQUEST_HASH = "request_sha256"
"""Memo key holding the hash of the request that started a workflow: tells a repeat from a clash."""

# Activity names: workflows call activities by name so that workflow modules never import the
# activity modules (and with them SQLAlchemy and httpx) into the workflow sandbox.
ACTIVITY_RECORD_LINE = "record_line"
ACTIVITY_RELEASE_LINE = "release_line"
ACTIVITY_RECORD_RECEIPT = "record_receipt"
ACTIVITY_APPLY_SKU = "apply_sku"
ACTIVITY_SIGNAL_ALLOCATIONS = "signal_allocations"
ACTIVITY_CREATE_SHIPMENT = "create_shipment"
ACTIVITY_REFUND = "refund"
ACTIVITY_SEND_MESSAGE = "send_message"

# Error types raised by activities that retrying cannot fix.
ERROR_UNKNOWN_SKU = "UnknownSku"
ERROR_LINE_NOT_FOUND = "LineNotFound"
ERROR_ALREADY_SHIPPED = "AlreadyShipped"
ERROR_OUTSIDE_SERVICE_REJECTED = "OutsideServiceRejected"

# Added with the promises (deadlines, notices, offers).
SIGNAL_ETA_CHANGED = "eta_changed"
"""The expected ship date moved (payload: `EtaUpdate`); the supply side sends it."""
UPDATE_AGREE_TO_WAIT = "agree_to_wait"
"""The customer consents to the delay (payload: `AgreeToWait`)."""
UPDATE_ACCEPT_OFFER = "accept_offer"
"""The customer takes one of the goodwill offers (payload: `AcceptOffer`)."""
ACTIVITY_GRANT_OFFER = "grant_offer"
ACTIVITY_RECORD_OUTREACH = "record_outreach"

ERROR_OFFER_UNKNOWN = "OfferUnknown"
ERROR_OFFER_USED = "OfferUsed"
ERROR_OFFER_EXPIRED = "OfferExpired"
ERROR_LINE_FINAL = "LineFinal"
UPDATE_TAKE_SUBSTITUTE = "take_substitute"
"""The customer takes an in-stock substitute (payload: `TakeSubstitute`)."""
ACTIVITY_SUBSTITUTE_LINE = "substitute_line"
ACTIVITY_FIND_SUBSTITUTES = "find_substitutes"
ERROR_SUBSTITUTE_REFUSED = "SubstituteRefused"

# Added with the supply side.
PURCHASE_ORDER_WORKFLOW = "PurchaseOrderWorkflow"
ACTIVITY_APPLY_PURCHASE_ORDER = "apply_purchase_order"
ACTIVITY_REFRESH_ETAS = "refresh_etas"


def purchase_order_workflow_id(supplier_id: str, po_id: str, request_hash: str) -> str:
    """One workflow per version of a PO: the same body twice is applied once."""
    return f"po:{supplier_id}:{po_id}:{request_hash[:16]}"


ACTIVITY_ALERT_SUBSCRIBERS = "alert_subscribers"

# Added with ship-complete orders.
ORDER_WORKFLOW = "ShipCompleteOrderWorkflow"
SIGNAL_LINE_READY = "line_ready"
"""To an order: one of its lines has all its stock (payload: `LineReady`)."""
UPDATE_WITHDRAW = "withdraw"
"""To an order: a line is cancelled; refused once the order's shipment is under way."""
SIGNAL_ORDER_SHIPPED = "order_shipped"
"""To a line: its order left in one shipment (payload: `OrderShipped`)."""
SIGNAL_ORDER_CHANGED = "order_changed"
"""To a line: another line of its order was cancelled (payload: `OrderChange`)."""
ACTIVITY_JOIN_ORDER = "join_order"
ACTIVITY_WITHDRAW_FROM_ORDER = "withdraw_from_order"
ACTIVITY_CREATE_ORDER_SHIPMENT = "create_order_shipment"


def order_workflow_id(order_id: str) -> str:
    """One workflow per ship-complete order, which its lines join."""
    return f"order:{order_id}"


# Why the policy cancelled a line at a deadline: the store keeps the reason, and the metrics
# count these as SLA breaches. Changing the words changes what old records are counted as.
CANCEL_NO_CONSENT = "delayed without the customer's consent"
CANCEL_MARKETPLACE_DEADLINE = "not shipped before the marketplace's deadline"
DEADLINE_CANCEL_REASONS = (CANCEL_NO_CONSENT, CANCEL_MARKETPLACE_DEADLINE)
