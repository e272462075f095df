"""A line of a ship-complete order: it joins its order's workflow, says when it has all its
stock, leaves the order when cancelled, and hears when the order ships or changes."""

from __future__ import annotations

from temporalio import workflow

from domain.contract.orders import JOIN_ORDER, LINE_READY, WITHDRAW_FROM_ORDER, order_workflow_id
from domain.line.messages import MessageKind
from domain.links import LinkAction
from domain.orders import JoinOrder, LineReady, OrderChange, OrderInput, Withdraw
from workflows.line.run import LineRun


def _order_input(line: LineRun) -> OrderInput:
    request = line.request
    return OrderInput(
        order_id=request.order_id,
        line_ids=request.order_lines,
        in_stock_lines=request.in_stock_lines,
        customer_id=request.customer.id,
    )


async def join(line: LineRun) -> None:
    """Join the order's workflow (whichever line comes first starts it)."""
    await line.call(
        JOIN_ORDER,
        JoinOrder(order=_order_input(line), line_id=line.request.line_id),
        summary=f"join ship-complete order {line.request.order_id}",
    )


async def report_ready(line: LineRun) -> None:
    """Tell the order this line has all its stock."""
    request = line.request
    handle = workflow.get_external_workflow_handle(order_workflow_id(request.order_id))
    await handle.signal(
        LINE_READY.name,
        LineReady(line_id=request.line_id, sku=request.sku, quantity=line.book.held),
    )
    line.book.reported_ready = True
    line.show_details()


async def withdraw(line: LineRun) -> bool:
    """Leave the order before a cancel; False when the order's shipment already took the
    line's units (the line then ships with it instead)."""
    request = line.request
    withdrawn = await line.call(
        WITHDRAW_FROM_ORDER,
        Withdraw(order_id=request.order_id, line_id=request.line_id),
        summary=f"leave ship-complete order {request.order_id}",
    )
    if withdrawn:
        line.book.with_order = False
    return withdrawn


async def tell_change(line: LineRun, change: OrderChange) -> None:
    """Another line of the order was cancelled: what happens to this one now."""
    if change.released:
        line.book.with_order = False
        plan = "This item will now ship on its own as soon as it is in stock."
    else:
        plan = "This item will still ship together with the rest of your order."
    await line.send(
        MessageKind.ORDER_UPDATE,
        f"order-change:{change.cancelled_line}",
        detail=f"Line {change.cancelled_line} of your order {line.request.order_id} "
        f"was cancelled. {plan}",
        links=[line.link(LinkAction.CANCEL)],
    )
