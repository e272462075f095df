"""BackorderLineWorkflow: one backordered order line, from sold to shipped or refunded."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from domain import contract
from domain.line import LineInput, MessageInput
from domain.models import (
    AllocationNotice,
    CancelRequest,
    CancelResult,
    LineState,
    LineStatus,
    MessageKind,
    MessageRecord,
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ReleaseResult,
    ShipmentInput,
    ShipmentRecord,
    ShipPolicy,
    SignalAllocationsInput,
)

STORE_TIMEOUT = timedelta(seconds=30)
SERVICE_TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[contract.ERROR_UNKNOWN_SKU, contract.ERROR_LINE_NOT_FOUND],
)
"""The store, the carrier and payments are retried without limit, a refusal (4xx) included: a line
must not be dropped, holding stock, because a service was down or misconfigured for an hour.
The failing activity shows in the UI until it succeeds. Only a missing SKU or line stops."""

MESSAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[contract.ERROR_OUTSIDE_SERVICE_REJECTED],
)
"""A message the notification service refuses for good (say, a bad address) is given up, so that
it never holds the line's shipment or refund; outages are still retried until they pass."""


@workflow.defn(name=contract.BACKORDER_LINE_WORKFLOW)
class BackorderLineWorkflow:
    """Carries one backordered line until it has shipped in full or been cancelled and refunded.

    Signals:
        allocated(AllocationNotice): stock was allocated to this line in the store. Counted once
            per allocation id, so the at-least-once fan-out of receipts is safe.
    Updates:
        cancel(CancelRequest) -> CancelResult: cancel whatever has not shipped, give held stock
            to the next lines in the queue, refund in full. Refused once the line is final;
            fails with AlreadyShipped when the last units shipped while it waited.
    Queries:
        status() -> LineStatus: the line as this workflow sees it.
    """

    @workflow.init
    def __init__(self, line: LineInput) -> None:
        self._line = line
        self._key = contract.line_key(line.request.order_id, line.request.line_id)
        self._state = LineState.RECEIVED
        self._allocated = 0
        self._shipped = 0
        self._seen_allocations: set[int] = set()
        self._shipments: list[ShipmentRecord] = []
        self._messages: list[MessageRecord] = []
        self._refunds: list[RefundRecord] = []
        self._cancel_request: CancelRequest | None = None
        self._cancel_result: CancelResult | None = None

    # ---- the life of the line -----------------------------------------------------------

    @workflow.run
    async def run(self, line: LineInput) -> LineStatus:
        recorded = await self._record()
        if self._allocated < line.request.quantity:
            await self._send(MessageKind.BACKORDER_CONFIRMATION, "confirmation", eta=recorded.eta)
        while not self._state.is_final:
            await workflow.wait_condition(
                lambda: self._cancel_request is not None or self._shippable() > 0
            )
            if self._cancel_request is not None:
                await self._cancel(self._cancel_request)
            else:
                await self._ship(self._shippable())
        # Let a cancel that arrived during the last shipment read its answer before we finish.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _record(self) -> RecordLineResult:
        recorded: RecordLineResult = await workflow.execute_activity(
            contract.ACTIVITY_RECORD_LINE,
            self._line,
            result_type=RecordLineResult,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=RETRY,
            summary=f"queue {self._line.request.quantity} x {self._line.request.sku}",
        )
        others = []
        for notice in recorded.allocations:
            if notice.line_key == self._key:
                self._take(notice)
            else:
                others.append(notice)
        if others:
            await self._signal_others(others)
        # Non-zero only when the line was recorded by an earlier run of this workflow id.
        self._shipped = recorded.shipped_quantity
        if recorded.state is LineState.CANCELLED:
            self._set_state(LineState.CANCELLED)
        else:
            self._refresh_state()
        return recorded

    def _shippable(self) -> int:
        """Units to ship now: whatever is held, or nothing until complete for ship-complete."""
        held = self._allocated - self._shipped
        if self._line.request.ship_policy is ShipPolicy.COMPLETE:
            return held if self._allocated >= self._line.request.quantity else 0
        return held

    async def _ship(self, quantity: int) -> None:
        sequence = len(self._shipments) + 1
        shipment: ShipmentRecord = await workflow.execute_activity(
            contract.ACTIVITY_CREATE_SHIPMENT,
            ShipmentInput(
                line_key=self._key, request=self._line.request, sequence=sequence, quantity=quantity
            ),
            result_type=ShipmentRecord,
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=RETRY,
            summary=f"ship {quantity} x {self._line.request.sku}",
        )
        self._shipments.append(shipment)
        self._shipped += shipment.quantity
        done = self._shipped >= self._line.request.quantity
        self._refresh_state()
        await self._send(
            MessageKind.SHIPPED if done else MessageKind.PARTIALLY_SHIPPED,
            f"shipment:{sequence}",
            shipment=shipment,
            quantity=self._shipped,
        )

    async def _cancel(self, request: CancelRequest) -> None:
        released: ReleaseResult = await workflow.execute_activity(
            contract.ACTIVITY_RELEASE_LINE,
            ReleaseInput(line_key=self._key, sku=self._line.request.sku, reason=request.reason),
            result_type=ReleaseResult,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=RETRY,
            summary=f"release {self._line.request.sku} ({request.reason})",
        )
        # The store is the truth: it saw allocations whose signals may still be on their way.
        self._allocated = released.allocated_quantity
        self._set_state(LineState.CANCELLED)
        if released.reallocated:
            await self._signal_others(released.reallocated)
        refund: RefundRecord | None = None
        if released.refund_quantity > 0:
            refund = await workflow.execute_activity(
                contract.ACTIVITY_REFUND,
                RefundInput(
                    line_key=self._key,
                    request=self._line.request,
                    quantity=released.refund_quantity,
                    reason=request.reason,
                ),
                result_type=RefundRecord,
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=RETRY,
                summary=f"refund {released.refund_quantity} x {self._line.request.unit_price}",
            )
            self._refunds.append(refund)
        await self._send(
            MessageKind.CANCELLED_REFUNDED,
            "cancelled",
            refund_amount=refund.amount if refund else "0",
        )
        self._cancel_result = CancelResult(
            state=LineState.CANCELLED, released_quantity=released.released_quantity, refund=refund
        )

    # ---- helpers ------------------------------------------------------------------------

    def _take(self, notice: AllocationNotice) -> None:
        if notice.allocation_id in self._seen_allocations or self._state.is_final:
            return
        self._seen_allocations.add(notice.allocation_id)
        self._allocated += notice.quantity
        if self._state is not LineState.RECEIVED:  # _record sets the first state itself
            self._refresh_state()

    def _refresh_state(self) -> None:
        self._set_state(LineState.of(self._line.request.quantity, self._allocated, self._shipped))

    async def _signal_others(self, notices: list[AllocationNotice]) -> None:
        await workflow.execute_activity(
            contract.ACTIVITY_SIGNAL_ALLOCATIONS,
            SignalAllocationsInput(allocations=notices, skip_line_key=self._key),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=RETRY,
            summary=f"tell {len(notices)} waiting lines of their stock",
        )

    async def _send(
        self,
        kind: MessageKind,
        event_key: str,
        *,
        eta: datetime | None = None,
        shipment: ShipmentRecord | None = None,
        refund_amount: str | None = None,
        quantity: int | None = None,
    ) -> None:
        try:
            message: MessageRecord = await workflow.execute_activity(
                contract.ACTIVITY_SEND_MESSAGE,
                MessageInput(
                    line_key=self._key,
                    request=self._line.request,
                    kind=kind,
                    event_key=event_key,
                    ship_by=self._line.ship_by,
                    eta=eta,
                    shipment=shipment,
                    refund_amount=refund_amount,
                    quantity=quantity,
                ),
                result_type=MessageRecord,
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=MESSAGE_RETRY,
                summary=f"message: {kind}",
            )
        except ActivityError as exc:
            workflow.logger.warning("message %s to the customer was refused: %s", kind, exc.cause)
            return
        self._messages.append(message)

    def _set_state(self, state: LineState) -> None:
        if state == self._state:
            return
        self._state = state
        workflow.upsert_search_attributes([contract.SA_STATE.value_set(state.value)])
        workflow.set_current_details(
            f"**{state.value}**: {self._allocated} allocated, {self._shipped} shipped "
            f"of {self._line.request.quantity}"
        )

    # ---- messages from outside ----------------------------------------------------------

    @workflow.signal(name=contract.SIGNAL_ALLOCATED)
    def allocated(self, notice: AllocationNotice) -> None:
        self._take(notice)

    @workflow.update(name=contract.UPDATE_CANCEL)
    async def cancel(self, request: CancelRequest) -> CancelResult:
        if self._cancel_request is None:
            self._cancel_request = request
        await workflow.wait_condition(
            lambda: self._cancel_result is not None or self._state is LineState.SHIPPED
        )
        if self._cancel_result is None:
            raise ApplicationError(
                "the line shipped in full before the cancel could take effect",
                type=contract.ERROR_ALREADY_SHIPPED,
            )
        return self._cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._state.is_final:
            raise ValueError(f"line is already {self._state.value}")

    @workflow.query(name=contract.QUERY_STATUS)
    def status(self) -> LineStatus:
        request = self._line.request
        return LineStatus(
            order_id=request.order_id,
            line_id=request.line_id,
            workflow_id=self._key,
            sku=request.sku,
            quantity=request.quantity,
            unit_price=request.unit_price,
            currency=request.currency,
            channel=request.channel,
            customer=request.customer,
            ordered_at=request.ordered_at,
            ship_by=self._line.ship_by,
            ship_policy=request.ship_policy,
            state=self._state,
            allocated_quantity=self._allocated,
            shipped_quantity=self._shipped,
            messages=list(self._messages),
            shipments=list(self._shipments),
            refunds=list(self._refunds),
            cancel_reason=self._cancel_request.reason if self._cancel_request else None,
        )
