"""The Temporal side of admission: starting, signalling and updating the service's workflows with
the ids, memo, search attributes and summaries the contract gives them. Values reaching here
were checked by `admission.service`; this module only carries them, and turns Temporal's
answers into the errors of `admission.errors`.

`Workflows` alone is what the benchmark calls "raw starts": no store, no HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from admission.errors import Conflict, NotFound, Refused, Unavailable
from domain import contract
from domain.contract.lines import (
    ACCEPT_OFFER,
    AGREE_TO_WAIT,
    CANCEL,
    ETA_CHANGED,
    LINE_RELEASE,
    LINE_WORKFLOW,
    STATUS,
    TAKE_SUBSTITUTE,
    UPDATE_PAYMENT,
    line_key,
)
from domain.contract.stock import (
    PURCHASE_ORDER_WORKFLOW,
    RECEIPT_WORKFLOW,
    SKU_UPDATE_WORKFLOW,
    purchase_order_workflow_id,
    receipt_workflow_id,
    sku_update_workflow_id,
)
from domain.line.choices import AcceptOffer, AgreeToWait, Offer, TakeSubstitute
from domain.line.effects import CancelRequest, CancelResult
from domain.line.input import EtaUpdate, LineInput, Preorder, line_summary
from domain.line.payment import NewPaymentMethod, PaymentView, payment_of
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.policy import DEFAULT_POLICY, ServicePolicy
from domain.requests import BackorderRequest, PurchaseOrderRequest, ReceiptRequest, SkuRequest
from domain.stock import PurchaseOrderInput, ReceiptInput, SkuInput, StockResult
from domain.values import canonical_hash

T = TypeVar("T")

UNAVAILABLE_STATUSES = (
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
)
"""Temporal is down, restarting or overloaded: the caller may ask again. Other RPC errors are
bugs, and stay errors."""


@contextlib.contextmanager
def temporal_answers() -> Iterator[None]:
    """Temporal not answering becomes `Unavailable("Temporal")`."""
    try:
        yield
    except RPCError as exc:
        if exc.status in UNAVAILABLE_STATUSES:
            raise Unavailable("Temporal") from exc
        raise


async def within(outcome: Awaitable[T], wait: timedelta | None) -> T | None:
    """The outcome, or None if `wait` passes first. Not `asyncio.wait_for`: the SDK turns the
    cancellation of a timed-out wait into WorkflowUpdateRPCTimeoutOrCancelledError, which
    `wait_for` then raises in place of its TimeoutError."""
    if wait is None:
        return await outcome
    task = asyncio.ensure_future(outcome)
    done, _ = await asyncio.wait({task}, timeout=wait.total_seconds())
    if done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, WorkflowUpdateRPCTimeoutOrCancelledError):
        await task
    return None


@dataclass(frozen=True)
class Started:
    workflow_id: str
    created: bool
    """False when the same request had already started this workflow."""


class Workflows:
    """Starts, signals and updates workflows on one task queue."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = contract.TASK_QUEUE,
        policy: ServicePolicy = DEFAULT_POLICY,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.policy = policy

    # ---- lines ----------------------------------------------------------------------------

    async def start_line(
        self,
        request: BackorderRequest,
        *,
        over_limit: bool = False,
        preorder: Preorder | None = None,
        request_hash: str | None = None,
    ) -> Started:
        """Start the workflow of one backordered line; idempotent by order id and line id, the
        request's hash in the memo telling a repeat from a clash (given when the caller has
        it already)."""
        request_hash = request_hash or canonical_hash(request)
        policy = self.policy.for_channel(request.channel)
        # A preorder's handling time counts from its release.
        ship_by = request.ship_by or policy.ship_by(
            preorder.release_at if preorder is not None else request.ordered_at
        )
        payment = payment_of(request, policy.days(policy.payment.hold_days))
        money = (
            [SearchAttributePair(contract.SA_PAYMENT_STATE, payment.state.value)] if payment else []
        )
        return await self._start_once(
            LINE_WORKFLOW.name,
            LineInput(
                request=request,
                ship_by=ship_by,
                request_hash=request_hash,
                policy=policy,
                payment=payment,
                priority=self.policy.priority.class_for(request.customer.tier, request.channel),
                over_limit=over_limit,
                preorder=preorder,
                release=LINE_RELEASE,
            ),
            workflow_id=line_key(request.order_id, request.line_id),
            request_hash=request_hash,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(contract.SA_ORDER_ID, request.order_id),
                    SearchAttributePair(contract.SA_SKU, request.sku),
                    SearchAttributePair(contract.SA_CHANNEL, request.channel.value),
                    SearchAttributePair(contract.SA_STATE, LineState.RECEIVED.value),
                    SearchAttributePair(contract.SA_SHIP_BY, ship_by),
                    SearchAttributePair(contract.SA_ESCALATION_LEVEL, 0),
                    SearchAttributePair(contract.SA_CUSTOMER_TIER, request.customer.tier.value),
                    *money,
                ]
            ),
            static_summary=line_summary(request, ship_by),
        )

    def _line(self, order_id: str, line_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(line_key(order_id, line_id))

    async def line_status(self, order_id: str, line_id: str) -> LineStatus:
        """The line as its workflow sees it (a worker must be running to answer)."""
        with temporal_answers():
            try:
                status: LineStatus = await self._line(order_id, line_id).query(
                    STATUS.name, result_type=LineStatus, rpc_timeout=timedelta(seconds=10)
                )
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise NotFound(f"no backorder {order_id}/{line_id}") from exc
                raise
        return status

    async def cancel(
        self, order_id: str, line_id: str, request: CancelRequest, *, wait: timedelta | None
    ) -> CancelResult | None:
        """Cancel what has not shipped and refund it: the result once the refund is made, or
        None when `wait` passed first (the line accepted the cancel: it is durable, under way)."""
        handle = self._line(order_id, line_id)
        with temporal_answers():
            try:
                update = await handle.start_update(
                    CANCEL.name,
                    request,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=CancelResult,
                )
                return await within(update.result(), wait)
            except WorkflowUpdateFailedError as exc:
                raise _refusal(exc, contract.ERROR_LINE_FINAL) from exc
            except RPCError as exc:
                raise await self._closed_or_missing(handle, order_id, line_id, exc) from exc

    async def _closed_or_missing(
        self, handle: WorkflowHandle[Any, Any], order_id: str, line_id: str, error: RPCError
    ) -> Exception:
        """Closed workflows refuse updates and signals with NOT_FOUND too: tell the two apart."""
        if error.status != RPCStatusCode.NOT_FOUND:
            return error
        try:
            described = await handle.describe()
        except RPCError:
            return NotFound(f"no backorder {order_id}/{line_id}")
        if described.status != WorkflowExecutionStatus.RUNNING:
            return Refused(contract.ERROR_LINE_FINAL, "This item is already shipped or cancelled.")
        return error

    async def _choose(
        self, order_id: str, line_id: str, update: str, arg: Any, result: type[T]
    ) -> T:
        """A customer's choice (an Update); the line's refusals become `Refused`."""
        handle = self._line(order_id, line_id)
        with temporal_answers():
            try:
                answer: T = await handle.execute_update(update, arg, result_type=result)
                return answer
            except WorkflowUpdateFailedError as exc:
                raise _refusal(exc, contract.ERROR_LINE_FINAL) from exc
            except RPCError as exc:
                raise await self._closed_or_missing(handle, order_id, line_id, exc) from exc

    async def agree_to_wait(self, order_id: str, line_id: str, request: AgreeToWait) -> LineStatus:
        return await self._choose(order_id, line_id, AGREE_TO_WAIT.name, request, LineStatus)

    async def accept_offer(self, order_id: str, line_id: str, offer_id: str) -> Offer:
        return await self._choose(
            order_id, line_id, ACCEPT_OFFER.name, AcceptOffer(offer_id=offer_id), Offer
        )

    async def take_substitute(self, order_id: str, line_id: str, sku: str) -> LineStatus:
        return await self._choose(
            order_id, line_id, TAKE_SUBSTITUTE.name, TakeSubstitute(sku=sku), LineStatus
        )

    async def update_payment(
        self, order_id: str, line_id: str, method: NewPaymentMethod
    ) -> PaymentView:
        return await self._choose(order_id, line_id, UPDATE_PAYMENT.name, method, PaymentView)

    async def set_eta(self, order_id: str, line_id: str, update: EtaUpdate) -> None:
        handle = self._line(order_id, line_id)
        with temporal_answers():
            try:
                await handle.signal(ETA_CHANGED.name, update)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise NotFound(f"no running backorder {order_id}/{line_id}") from exc
                raise

    # ---- stock and supply -----------------------------------------------------------------

    async def receive(self, supplier_id: str, receipt: ReceiptRequest) -> Started:
        """Report stock that arrived; a receipt id reported again is counted once."""
        request_hash = canonical_hash(receipt)
        return await self._start_once(
            RECEIPT_WORKFLOW.name,
            ReceiptInput(supplier_id=supplier_id, receipt=receipt, request_hash=request_hash),
            workflow_id=receipt_workflow_id(supplier_id, receipt.receipt_id),
            request_hash=request_hash,
            task_queue=contract.stock_task_queue(self.task_queue),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(contract.SA_SKU, receipt.sku),
                    SearchAttributePair(contract.SA_RECEIPT_ID, receipt.receipt_id),
                ]
            ),
            static_summary=f"receipt {receipt.receipt_id}: {receipt.quantity} x {receipt.sku}",
        )

    async def apply_purchase_order(
        self, supplier_id: str, po_id: str, order: PurchaseOrderRequest, *, unique: str
    ) -> None:
        """Record a PO or its new date or quantity, then re-date the waiting lines; waits for
        it. `unique` names this application: a new one each time, unless the caller sent an
        Idempotency-Key (a PO is a level: the same values sent after others apply again)."""
        await self._run(
            PURCHASE_ORDER_WORKFLOW.name,
            PurchaseOrderInput(supplier_id=supplier_id, po_id=po_id, order=order),
            workflow_id=purchase_order_workflow_id(supplier_id, po_id, unique),
            result_type=type(None),
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(contract.SA_SKU, order.sku)]
            ),
            static_summary=f"PO {po_id}: {order.quantity} x {order.sku} expected "
            f"{order.expected_at:%d %b %Y}",
        )

    async def apply_sku(self, sku: str, request: SkuRequest, *, unique: str) -> StockResult:
        """Create or update a catalog entry and allocate the free stock it sets; waits for it.
        A stock count is a level, applied every time: `unique` is new for each request, unless
        the caller sent an Idempotency-Key, whose retry then finds the first run."""
        result: StockResult = await self._run(
            SKU_UPDATE_WORKFLOW.name,
            SkuInput(sku=sku, request=request, request_hash=canonical_hash(request)),
            workflow_id=sku_update_workflow_id(sku, unique),
            result_type=StockResult,
            search_attributes=TypedSearchAttributes([SearchAttributePair(contract.SA_SKU, sku)]),
            static_summary=f"catalog {sku}"
            + ("" if request.free_stock is None else f": stock count {request.free_stock}"),
        )
        return result

    # ---- starting ---------------------------------------------------------------------------

    async def _start_once(
        self,
        workflow: str,
        payload: Any,
        *,
        workflow_id: str,
        request_hash: str,
        task_queue: str | None = None,
        **options: Any,
    ) -> Started:
        """Start a workflow whose id is the request's identity: a repeat of the same body is
        answered as the first was, another body under the same ids is a conflict."""
        with temporal_answers():
            try:
                await self.client.start_workflow(
                    workflow,
                    payload,
                    id=workflow_id,
                    task_queue=task_queue or self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    memo={contract.MEMO_REQUEST_HASH: request_hash},
                    **options,
                )
                return Started(workflow_id=workflow_id, created=True)
            except WorkflowAlreadyStartedError:
                described = await self.client.get_workflow_handle(workflow_id).describe()
                earlier = await described.memo_value(contract.MEMO_REQUEST_HASH, default=None)
                if earlier != request_hash:
                    raise Conflict(
                        f"{workflow_id} was already started with a different request body"
                    ) from None
                return Started(workflow_id=workflow_id, created=False)

    async def _run(
        self, workflow: str, payload: Any, *, workflow_id: str, result_type: type[T], **options: Any
    ) -> T:
        """Run a workflow on the stock queue and wait for its result; if one of that id ran
        already (a retry under the same Idempotency-Key), its result."""
        handle: WorkflowHandle[Any, T]
        with temporal_answers():
            try:
                handle = await self.client.start_workflow(
                    workflow,
                    payload,
                    id=workflow_id,
                    task_queue=contract.stock_task_queue(self.task_queue),
                    result_type=result_type,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    **options,
                )
            except WorkflowAlreadyStartedError:
                handle = self.client.get_workflow_handle(workflow_id, result_type=result_type)
            return await handle.result()


def _refusal(error: WorkflowUpdateFailedError, default_kind: str) -> Refused:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return Refused(cause.type or default_kind, cause.message)
    return Refused(default_kind, str(cause))
