"""Workflows that bring stock in: a supplier's receipt, and a catalog update that frees stock;
and the one that re-dates lines when a purchase order changes.

Receipts and catalog updates do the same two steps: one store transaction that splits the stock
over the SKU's queue, then signals to every line that got some. Running them as workflows
(rather than in the API request) is what makes the second step survive a crash between the two.
"""

from __future__ import annotations

from temporalio import workflow

from domain.contract.stock import (
    ALERT_SUBSCRIBERS,
    APPLY_PURCHASE_ORDER,
    APPLY_SKU,
    PURCHASE_ORDER_WORKFLOW,
    RECEIPT_WORKFLOW,
    RECORD_RECEIPT,
    SIGNAL_ALLOCATIONS,
    SIGNAL_RELEASE_MOVES,
    SIGNAL_SHIP_BEFORE_RELEASE,
    SKU_UPDATE_WORKFLOW,
)
from domain.stock import (
    PurchaseOrderInput,
    ReceiptInput,
    SignalAllocationsInput,
    SignalReleaseMoves,
    SignalShipBeforeRelease,
    SkuInput,
    StockResult,
)
from workflows.calls import execute
from workflows.etas import refresh_etas


async def _tell_lines(result: StockResult) -> None:
    if result.allocations:
        await execute(
            SIGNAL_ALLOCATIONS,
            SignalAllocationsInput(allocations=result.allocations),
            summary=f"tell {len(result.allocations)} lines of their stock",
        )
    await refresh_etas(result.sku)
    if result.free_stock > 0:
        await execute(
            ALERT_SUBSCRIBERS, result.sku, summary=f"back-in-stock alerts for {result.sku}"
        )


@workflow.defn(name=RECEIPT_WORKFLOW.name)
class ReceiptWorkflow:
    """Allocates one supplier receipt to the waiting lines of its SKU, in queue order.

    No signals, updates or queries: the result (allocations made) is the record, and the
    store's receipts table makes a receipt reported twice count once.
    """

    @workflow.run
    async def run(self, receipt: ReceiptInput) -> StockResult:
        result = await execute(
            RECORD_RECEIPT,
            receipt,
            summary=f"allocate {receipt.receipt.quantity} x {receipt.receipt.sku}",
        )
        await _tell_lines(result)
        if result.redate_skus and workflow.patched("supplier-lateness-redates"):
            # The supplier's record moved: so may the dates of its other SKUs' waiting lines
            # (each refresh tells only the lines whose date really moved).
            for sku in result.redate_skus:
                await refresh_etas(sku)
        return result


@workflow.defn(name=SKU_UPDATE_WORKFLOW.name)
class SkuUpdateWorkflow:
    """Applies a catalog entry; free stock it sets goes to the SKU's waiting lines at once."""

    @workflow.run
    async def run(self, sku: SkuInput) -> StockResult:
        result = await execute(APPLY_SKU, sku, summary=f"catalog {sku.sku}")
        if result.release_moves and workflow.patched("preorder-release-moves"):
            await execute(
                SIGNAL_RELEASE_MOVES,
                SignalReleaseMoves(moves=result.release_moves),
                summary=f"tell {len(result.release_moves)} preorders of their new release",
            )
        if result.ship_now and workflow.patched("preorder-ship-before-release"):
            await execute(
                SIGNAL_SHIP_BEFORE_RELEASE,
                SignalShipBeforeRelease(sku=result.sku, line_keys=result.ship_now),
                summary=f"ship the stock {len(result.ship_now)} preorders hold",
            )
        await _tell_lines(result)
        return result


@workflow.defn(name=PURCHASE_ORDER_WORKFLOW.name)
class PurchaseOrderWorkflow:
    """Records a supplier's purchase order (or its new date or quantity), then recomputes the
    ETA of every line waiting for its SKU; lines whose ETA moved tell their customers."""

    @workflow.run
    async def run(self, change: PurchaseOrderInput) -> None:
        await execute(
            APPLY_PURCHASE_ORDER,
            change,
            summary=f"PO {change.po_id}: {change.order.quantity} x {change.order.sku} "
            f"expected {change.order.expected_at:%d %b %Y}",
        )
        await refresh_etas(change.order.sku)
