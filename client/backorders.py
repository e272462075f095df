"""Start, cancel and read backordered lines; report receipts and catalog stock.

    client = BackorderClient(await connect(settings), sku_exists=...)
    result = await client.start({"order_id": "991", "line_id": "1", ...})
    await client.cancel("991", "1", reason="customer asked")

Errors (all subclasses of `BackorderError`):
    pydantic.ValidationError  the request is invalid; each error names its field
    UnknownSkuError           the SKU is not in the catalog (field `sku`)
    ConflictError             these ids were already used with another request body
    LineNotFoundError         no workflow for that order line
    CancelRefusedError        the line has already shipped or been cancelled
    ChoiceRefusedError        a customer's choice refused (unknown, used or expired offer...)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
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
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from client.codec import data_converter
from config.settings import Settings
from domain import contract
from domain.contract.lines import (
    ACCEPT_OFFER,
    AGREE_TO_WAIT,
    CANCEL,
    ETA_CHANGED,
    LINE_WORKFLOW,
    STATUS,
    TAKE_SUBSTITUTE,
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
from domain.line.input import EtaUpdate, LineInput, line_summary
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.policy import DEFAULT_POLICY, ServicePolicy
from domain.requests import (
    BackorderRequest,
    PurchaseOrderRequest,
    ReceiptRequest,
    SkuRequest,
)
from domain.stock import PurchaseOrderInput, ReceiptInput, SkuInput, StockResult
from domain.values import canonical_hash

T = TypeVar("T")


class BackorderError(Exception):
    """Base of the errors a caller is expected to handle."""


class UnknownSkuError(BackorderError):
    field = "sku"

    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown SKU {sku!r}: create it with PUT /v1/skus/{sku} first")


class ConflictError(BackorderError):
    """The ids are taken by a request with another body: a client bug, never retried."""


class LineNotFoundError(BackorderError):
    pass


class CancelRefusedError(BackorderError):
    pass


class ChoiceRefusedError(BackorderError):
    """The line refused a customer's choice; the message is written for the customer."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
        """One of the contract's ERROR_OFFER_* / ERROR_LINE_FINAL types."""


@dataclass(frozen=True)
class StartResult:
    workflow_id: str
    created: bool
    """False when the same request had already started this workflow."""


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A Temporal client with the data converter every process of the service must share
    (payloads encrypted when `BACKORDERS_CODEC_KEYS` is set), over TLS and with an API key when
    configured (`temporal_tls`). Workers pass the runtime that serves the SDK's metrics
    (`worker.main.sdk_runtime`).

    ValueError naming the variable for a TLS setting that cannot be used; RuntimeError saying
    what was tried when the server cannot be reached or the TLS handshake fails."""
    tls = temporal_tls(settings)
    try:
        return await Client.connect(
            settings.temporal_target,
            namespace=settings.temporal_namespace,
            # The SDK sends an API key as given, so an empty one would be an empty bearer token.
            api_key=settings.temporal_api_key or None,
            tls=tls,
            data_converter=data_converter(settings),
            runtime=runtime,
        )
    except RuntimeError as exc:
        # The SDK names what failed (a certificate, a closed connection) but not how it dialled:
        # a TLS mismatch with the server reads as a garbled message or a dropped connection.
        raise RuntimeError(
            f"cannot connect to Temporal at {settings.temporal_target} {_how(settings, tls)}: {exc}"
        ) from exc


def _how(settings: Settings, tls: TLSConfig | bool) -> str:
    """How `connect` dials, for its errors: never a key or a file's content."""
    if tls is False:
        return "without TLS"
    trust = "BACKORDERS_TEMPORAL_TLS_CA_FILE" if settings.temporal_tls_ca_file else "system CAs"
    details = [f"trusting {trust}"]
    if settings.temporal_tls_server_name:
        details.append(f"server name {settings.temporal_tls_server_name}")
    if settings.temporal_tls_cert_file:
        details.append("client certificate")
    if settings.temporal_api_key:
        details.append("API key")
    return f"over TLS ({', '.join(details)})"


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """`Client.connect`'s `tls`: False for a plain connection, True for TLS verified against
    the system's CA bundle, a TLSConfig once a CA, a client certificate or a server name is
    set. Any of those, or an API key, turns TLS on: Temporal Cloud takes keys over TLS only,
    and a certificate sent in clear would be a configuration mistake, not a wish.

    The files are read here, on every connect, so that renewed certificates are picked up by
    a restart. ValueError naming the variable for a file missing, unreadable or not PEM, and
    for a client certificate without its key (or the reverse)."""
    cert_file, key_file = settings.temporal_tls_cert_file, settings.temporal_tls_key_file
    if (cert_file is None) != (key_file is None):
        given, missing = (
            ("BACKORDERS_TEMPORAL_TLS_CERT_FILE", "BACKORDERS_TEMPORAL_TLS_KEY_FILE")
            if key_file is None
            else ("BACKORDERS_TEMPORAL_TLS_KEY_FILE", "BACKORDERS_TEMPORAL_TLS_CERT_FILE")
        )
        raise ValueError(
            f"{given} is set but {missing} is not: mutual TLS needs the client certificate "
            "and its private key"
        )
    config = TLSConfig(
        server_root_ca_cert=_pem("BACKORDERS_TEMPORAL_TLS_CA_FILE", settings.temporal_tls_ca_file),
        domain=settings.temporal_tls_server_name or None,
        client_cert=_pem("BACKORDERS_TEMPORAL_TLS_CERT_FILE", cert_file),
        client_private_key=_pem("BACKORDERS_TEMPORAL_TLS_KEY_FILE", key_file, "PRIVATE KEY"),
    )
    if config != TLSConfig():
        return config
    return settings.temporal_tls or bool(settings.temporal_api_key)


def _pem(variable: str, path: Path | None, label: str = "CERTIFICATE") -> bytes | None:
    """The PEM file `path` holding a `label` block, or None when unset. Checked here because
    the SDK silently ignores a CA file without a certificate and calls a bad key only a
    `PrivateKeyParseError`. Messages never quote the file: it may be a private key."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{variable}: {path} not found") from None
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    # Keys come as `PRIVATE KEY` (PKCS#8) or as `RSA PRIVATE KEY` / `EC PRIVATE KEY`.
    if not re.search(rf"-----BEGIN ([A-Z]+ )?{label}-----".encode(), data):
        raise ValueError(f"{variable}: {path} holds no PEM {label.lower()} (-----BEGIN {label})")
    return data


async def _within(outcome: Awaitable[T], wait: timedelta | None) -> T | None:
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


class BackorderClient:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = contract.TASK_QUEUE,
        policy: ServicePolicy = DEFAULT_POLICY,
        sku_exists: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """`sku_exists` checks the catalog before a start; without it an unknown SKU is only
        found by the workflow, which then fails (nothing is written to the store)."""
        self.client = client
        self.task_queue = task_queue
        self.policy = policy
        self.sku_exists = sku_exists

    async def _check_sku(self, sku: str) -> None:
        if self.sku_exists is not None and not await self.sku_exists(sku):
            raise UnknownSkuError(sku)

    async def _start_once(
        self,
        workflow: str,
        payload: Any,
        *,
        workflow_id: str,
        request_hash: str,
        task_queue: str | None = None,
        **options: Any,
    ) -> StartResult:
        """Start a workflow whose id is the request's identity: a repeat of the same body is
        answered as the first was, another body under the same ids is a conflict."""
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
            return StartResult(workflow_id=workflow_id, created=True)
        except WorkflowAlreadyStartedError:
            described = await self.client.get_workflow_handle(workflow_id).describe()
            earlier = await described.memo_value(contract.MEMO_REQUEST_HASH, default=None)
            if earlier != request_hash:
                raise ConflictError(
                    f"{workflow_id} was already started with a different request body"
                ) from None
            return StartResult(workflow_id=workflow_id, created=False)

    async def start(self, request: BackorderRequest | Mapping[str, Any]) -> StartResult:
        """Start the workflow of one backordered line (idempotent by order id and line id)."""
        if not isinstance(request, BackorderRequest):
            request = BackorderRequest.model_validate(request)
        await self._check_sku(request.sku)
        request_hash = canonical_hash(request)
        policy = self.policy.for_channel(request.channel)
        ship_by = request.ship_by or policy.ship_by(request.ordered_at)
        workflow_id = line_key(request.order_id, request.line_id)
        return await self._start_once(
            LINE_WORKFLOW.name,
            LineInput(request=request, ship_by=ship_by, request_hash=request_hash, policy=policy),
            workflow_id=workflow_id,
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
                ]
            ),
            static_summary=line_summary(request, ship_by),
        )

    def _line(self, order_id: str, line_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(line_key(order_id, line_id))

    async def status(self, order_id: str, line_id: str) -> LineStatus:
        """The line as its workflow sees it (a worker must be running to answer)."""
        try:
            status: LineStatus = await self._line(order_id, line_id).query(
                STATUS.name, result_type=LineStatus, rpc_timeout=timedelta(seconds=10)
            )
            return status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise LineNotFoundError(f"no backorder {order_id}/{line_id}") from exc
            raise

    async def cancel(
        self,
        order_id: str,
        line_id: str,
        *,
        reason: str = "requested",
        requested_by: str = "order_system",
        wait: timedelta | None = None,
    ) -> CancelResult | None:
        """Cancel what has not shipped and refund it.

        Returns once the refund is made, or None when `wait` passed first: the cancel was
        accepted by the line (it is durable, and asking again is safe) and is still under way.
        """
        request = CancelRequest(reason=reason, requested_by=requested_by)
        handle = self._line(order_id, line_id)
        try:
            update = await handle.start_update(
                CANCEL.name,
                request,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=CancelResult,
            )
            return await _within(update.result(), wait)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise CancelRefusedError(message) from exc
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # Updates are refused by closed workflows with NOT_FOUND too: tell the two apart.
            try:
                described = await handle.describe()
            except RPCError:
                raise LineNotFoundError(f"no backorder {order_id}/{line_id}") from exc
            if described.status != WorkflowExecutionStatus.RUNNING:
                raise CancelRefusedError("the line is already finished") from exc
            raise

    async def _choose(
        self, order_id: str, line_id: str, update: str, arg: Any, result: type[T]
    ) -> T:
        """Run a customer's choice (an update) on a line; refusals become ChoiceRefusedError."""
        handle = self._line(order_id, line_id)
        try:
            answer: T = await handle.execute_update(update, arg, result_type=result)
            return answer
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ChoiceRefusedError(cause.message, cause.type or "") from exc
            raise
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                described = await self._describe_or_none(handle)
                if described is None:
                    raise LineNotFoundError(f"no backorder {order_id}/{line_id}") from exc
                raise ChoiceRefusedError(
                    "This item is already shipped or cancelled.", contract.ERROR_LINE_FINAL
                ) from exc
            raise

    async def _describe_or_none(self, handle: WorkflowHandle[Any, Any]) -> Any:
        try:
            return await handle.describe()
        except RPCError:
            return None

    async def agree_to_wait(self, order_id: str, line_id: str) -> LineStatus:
        """The customer consents to the delay (to the last revised date, or without one)."""
        return await self._choose(order_id, line_id, AGREE_TO_WAIT.name, AgreeToWait(), LineStatus)

    async def accept_offer(self, order_id: str, line_id: str, offer_id: str) -> Offer:
        """The customer takes a goodwill offer; refused if unknown, used or expired."""
        return await self._choose(
            order_id, line_id, ACCEPT_OFFER.name, AcceptOffer(offer_id=offer_id), Offer
        )

    async def take_substitute(self, order_id: str, line_id: str, sku: str) -> LineStatus:
        """The customer takes an in-stock substitute; refused if not offered or not in stock."""
        return await self._choose(
            order_id, line_id, TAKE_SUBSTITUTE.name, TakeSubstitute(sku=sku), LineStatus
        )

    async def set_eta(self, order_id: str, line_id: str, eta: datetime | None) -> None:
        """Tell a line its expected ship date moved (the supply side does this)."""
        try:
            await self._line(order_id, line_id).signal(ETA_CHANGED.name, EtaUpdate(eta=eta))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise LineNotFoundError(f"no running backorder {order_id}/{line_id}") from exc
            raise

    async def receive(self, supplier_id: str, receipt: ReceiptRequest) -> StartResult:
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

    async def _run_once(
        self, workflow: str, payload: Any, *, workflow_id: str, result_type: type[T], **options: Any
    ) -> tuple[T, bool]:
        """Run a workflow whose id names its request body, and wait for its result. The same body
        again is answered with the first run's result (and False) instead of running twice."""
        handle: WorkflowHandle[Any, T]
        try:
            handle = await self.client.start_workflow(
                workflow,
                payload,
                id=workflow_id,
                task_queue=contract.stock_task_queue(self.task_queue),
                result_type=result_type,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                **options,
            )
            created = True
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(workflow_id, result_type=result_type)
            created = False
        return await handle.result(), created

    async def purchase_order(
        self, supplier_id: str, po_id: str, order: PurchaseOrderRequest
    ) -> bool:
        """Record a PO or its new date or quantity, then re-date the waiting lines; waits for it.
        Returns False when this very body had been applied already."""
        request_hash = canonical_hash(order)
        _, created = await self._run_once(
            PURCHASE_ORDER_WORKFLOW.name,
            PurchaseOrderInput(supplier_id=supplier_id, po_id=po_id, order=order),
            workflow_id=purchase_order_workflow_id(supplier_id, po_id, request_hash),
            result_type=type(None),
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(contract.SA_SKU, order.sku)]
            ),
            static_summary=f"PO {po_id}: {order.quantity} x {order.sku} expected "
            f"{order.expected_at:%d %b %Y}",
        )
        return created

    async def apply_sku(self, sku: str, request: SkuRequest) -> StockResult:
        """Create or update a catalog entry and allocate the free stock it sets; waits for it.

        Idempotent: the same body again (say, a retry after a timeout) is answered with the first
        one's result instead of setting the stock count a second time."""
        request_hash = canonical_hash(request)
        result, _ = await self._run_once(
            SKU_UPDATE_WORKFLOW.name,
            SkuInput(sku=sku, request=request, request_hash=request_hash),
            workflow_id=sku_update_workflow_id(sku, request_hash[:16]),
            result_type=StockResult,
            search_attributes=TypedSearchAttributes([SearchAttributePair(contract.SA_SKU, sku)]),
            static_summary=f"catalog {sku}"
            + ("" if request.free_stock is None else f": stock count {request.free_stock}"),
        )
        return result
