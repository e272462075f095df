"""Lines of a ship-complete order talking to their order's workflow through a client: joining it
(signal-with-start, so whichever line comes first starts it) and withdrawing from it (an Update,
so that a line learns for certain whether its units already left with the order)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy

from domain.contract.orders import (
    JOIN_ORDER,
    ORDER_WORKFLOW,
    WITHDRAW,
    WITHDRAW_FROM_ORDER,
    order_workflow_id,
)
from domain.orders import JoinOrder, Withdraw


class OrderActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    @JOIN_ORDER.defn
    async def join_order(self, join: JoinOrder) -> None:
        order = join.order
        await self.client.start_workflow(
            ORDER_WORKFLOW.name,
            order,
            id=order_workflow_id(order.order_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="line_joined",
            start_signal_args=[join.line_id],
            static_summary=f"ship-complete order {order.order_id}: "
            f"{len(order.line_ids)} backordered lines, {len(order.in_stock_lines)} in stock",
        )

    @WITHDRAW_FROM_ORDER.defn
    async def withdraw_from_order(self, withdraw: Withdraw) -> bool:
        """True when the line left the order; False when the order already shipped it."""
        handle = self.client.get_workflow_handle(order_workflow_id(withdraw.order_id))
        try:
            withdrawn: bool = await handle.execute_update(WITHDRAW.name, withdraw, result_type=bool)
        except WorkflowUpdateFailedError:
            return False
        return withdrawn
