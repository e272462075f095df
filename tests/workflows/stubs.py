"""Stub activities for workflow-level tests: registered under the contract's names, they keep an
in-memory record of a line's store and of what left for the outside world.

Every stub is declared with the contract's `Activity.defn`, so mypy checks that it takes and gives
what the contract says, exactly like the real activities.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from domain.contract.lines import (
    AUTHORIZE,
    CAPTURE,
    CREATE_SHIPMENT,
    FIND_SUBSTITUTES,
    GRANT_OFFER,
    LINE_WORKFLOW,
    RECORD_LINE,
    RECORD_OUTREACH,
    REFUND,
    RELEASE_LINE,
    SEND_MESSAGE,
    START_SURVEY,
    STATUS,
    SUBSTITUTE_LINE,
    VOID,
    line_key,
)
from domain.contract.stock import REFRESH_ETAS, SIGNAL_ALLOCATIONS
from domain.line.choices import (
    FindSubstitutes,
    OfferGrant,
    OutreachInput,
    SubstituteInput,
    SubstituteOption,
    SubstituteResult,
)
from domain.line.effects import (
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ReleaseResult,
    ShipmentInput,
    ShipmentRecord,
)
from domain.line.input import LineInput
from domain.line.messages import MessageInput, MessageKind, MessageRecord, SurveyInput
from domain.line.payment import (
    Authorization,
    AuthorizeInput,
    CaptureInput,
    CaptureResult,
    Payment,
    VoidInput,
    VoidResult,
)
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.policy import ServicePolicy
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice, RefreshEtas, SignalAllocationsInput
from domain.values import canonical_hash
from workflows.line.workflow import BackorderLineWorkflow


@dataclass
class StubStore:
    """What the real activities would have written: enough to drive and check one line."""

    free_stock: int = 0
    eta: datetime | None = None
    allocated: Counter[str] = field(default_factory=Counter)
    released: list[ReleaseInput] = field(default_factory=list)
    shipments: list[ShipmentInput] = field(default_factory=list)
    refunds: list[RefundInput] = field(default_factory=list)
    messages: list[MessageInput] = field(default_factory=list)
    sent_at: list[datetime] = field(default_factory=list)
    """When each of `messages` was sent, by the clock."""
    grants: list[OfferGrant] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    substitutes: dict[str, SubstituteOption] = field(default_factory=dict)
    quantity_of: dict[str, int] = field(default_factory=dict)
    authorizations: list[AuthorizeInput] = field(default_factory=list)
    captures: list[CaptureInput] = field(default_factory=list)
    voids: list[VoidInput] = field(default_factory=list)
    surveys: list[SurveyInput] = field(default_factory=list)
    """Surveys the lines asked to start (`survey_worker` of the survey tests starts them)."""
    _next_allocation: int = 100

    def allocation(
        self, key: str, quantity: int, source: str = "receipt:acme:r1"
    ) -> AllocationNotice:
        """A new allocation of `quantity` to the line `key`, as a receipt would make it."""
        self._next_allocation += 1
        self.allocated[key] += quantity
        _, order_id, line_id = key.split(":")
        return AllocationNotice(
            allocation_id=self._next_allocation,
            line_key=key,
            order_id=order_id,
            line_id=line_id,
            quantity=quantity,
            source=source,
        )

    def kinds(self) -> list[MessageKind]:
        return [message.kind for message in self.messages]

    # ---- the activities ----------------------------------------------------------------

    @RECORD_LINE.defn
    async def record_line(self, line: LineInput) -> RecordLineResult:
        self.calls["record_line"] += 1
        key = line_key(line.request.order_id, line.request.line_id)
        take = min(self.free_stock, line.request.quantity)
        self.free_stock -= take
        notices = [self.allocation(key, take, source=f"sku:{line.request.sku}")] if take else []
        return RecordLineResult(
            allocations=notices,
            allocated_quantity=take,
            shipped_quantity=0,
            state=LineState.of(line.request.quantity, take, 0),
            eta=self.eta if take < line.request.quantity else None,
        )

    @RELEASE_LINE.defn
    async def release_line(self, release: ReleaseInput) -> ReleaseResult:
        self.calls["release_line"] += 1
        self.released.append(release)
        shipped = sum(s.quantity for s in self.shipments if s.line_key == release.line_key)
        allocated = self.allocated[release.line_key]
        return ReleaseResult(
            allocated_quantity=allocated,
            shipped_quantity=shipped,
            released_quantity=allocated - shipped,
            refund_quantity=self.quantity_of[release.line_key] - shipped,
            reallocated=[],
            already_cancelled=False,
        )

    @CREATE_SHIPMENT.defn
    async def create_shipment(self, shipment: ShipmentInput) -> ShipmentRecord:
        """Keyed by line and sequence, as the carrier and the store are: a local attempt that
        runs again (its workflow task was lost) books nothing new."""
        self.calls["create_shipment"] += 1
        booked = any(
            (s.line_key, s.sequence) == (shipment.line_key, shipment.sequence)
            for s in self.shipments
        )
        if not booked:
            self.shipments.append(shipment)
        return ShipmentRecord(
            sequence=shipment.sequence,
            quantity=shipment.quantity,
            tracking_number=f"TRACK-{shipment.sequence}",
            carrier_shipment_id=f"SHIP-{shipment.sequence}",
            expedited=shipment.expedited,
            created_at=datetime.now(UTC),
        )

    @REFUND.defn
    async def refund(self, refund: RefundInput) -> RefundRecord:
        self.calls["refund"] += 1
        self.refunds.append(refund)
        return RefundRecord(
            refund_id=f"RF-{len(self.refunds)}",
            amount=refund.amount or "0.00",
            currency=refund.request.currency,
            quantity=refund.quantity,
            created_at=datetime.now(UTC),
        )

    @SEND_MESSAGE.defn
    async def send_message(self, message: MessageInput) -> MessageRecord:
        key = f"{message.line_key}:message:{message.event_key}"
        if all(f"{m.line_key}:message:{m.event_key}" != key for m in self.messages):
            self.messages.append(message)
            self.sent_at.append(datetime.now(UTC))
        return MessageRecord(
            kind=message.kind,
            subject=str(message.kind),
            body="",
            idempotency_key=key,
            sent_at=datetime.now(UTC),
        )

    @GRANT_OFFER.defn
    async def grant_offer(self, grant: OfferGrant) -> str:
        self.grants.append(grant)
        return f"granted {grant.offer.offer_id}"

    @RECORD_OUTREACH.defn
    async def record_outreach(self, task: OutreachInput) -> None:
        self.calls["record_outreach"] += 1

    @FIND_SUBSTITUTES.defn
    async def find_substitutes(self, query: FindSubstitutes) -> list[SubstituteOption]:
        return [o for o in self.substitutes.values() if o.free_stock >= query.quantity]

    @SUBSTITUTE_LINE.defn
    async def substitute_line(self, change: SubstituteInput) -> SubstituteResult:
        option = self.substitutes[change.to_sku]
        held = self.allocated[change.line_key]
        return SubstituteResult(
            quantity=self.quantity_of[change.line_key],
            released_quantity=held,
            reallocated=[],
            unit_price=option.price,
        )

    @AUTHORIZE.defn
    async def authorize(self, request: AuthorizeInput) -> Authorization:
        self.authorizations.append(request)
        if "decline" in request.method:
            return Authorization(reference="", expires_at=request.expires_at, declined=True)
        return Authorization(
            reference=f"auth-{len(self.authorizations)}", expires_at=request.expires_at
        )

    @CAPTURE.defn
    async def capture(self, request: CaptureInput) -> CaptureResult:
        self.captures.append(request)
        return CaptureResult(capture_id=f"cap-{request.shipment}", amount=request.amount)

    @VOID.defn
    async def void(self, request: VoidInput) -> VoidResult:
        self.voids.append(request)
        return VoidResult(void_id=f"void-{request.number}")

    @REFRESH_ETAS.defn
    async def refresh_etas(self, refresh: RefreshEtas) -> datetime | None:
        self.calls["refresh_etas"] += 1
        return self.eta

    @SIGNAL_ALLOCATIONS.defn
    async def signal_allocations(self, batch: SignalAllocationsInput) -> int:
        return len(batch.allocations)

    @START_SURVEY.defn
    async def start_survey(self, survey: SurveyInput) -> None:
        self.surveys.append(survey)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.record_line,
            self.release_line,
            self.create_shipment,
            self.refund,
            self.send_message,
            self.grant_offer,
            self.record_outreach,
            self.find_substitutes,
            self.substitute_line,
            self.refresh_etas,
            self.signal_allocations,
            self.start_survey,
            self.authorize,
            self.capture,
            self.void,
        ]


def line_request(order_id: str, quantity: int = 2, **extra: Any) -> BackorderRequest:
    return BackorderRequest.model_validate(
        {
            "order_id": order_id,
            "line_id": "1",
            "sku": "SKU-1",
            "quantity": quantity,
            "unit_price": "10.00",
            "currency": "USD",
            "channel": "web",
            "customer": {"id": "c1", "email": "c1@example.com"},
            "ordered_at": datetime.now(UTC).isoformat(),
            **extra,
        }
    )


SECONDS_POLICY = ServicePolicy.model_validate(
    {"day_seconds": 1, "channels": {"web": {"handling_days": 30, "ladder": []}}}
)
"""Policy days of one second, and no deadline within a test unless it sets one."""


@dataclass
class LineHarness:
    client: Client
    task_queue: str
    store: StubStore

    async def start(
        self,
        request: BackorderRequest,
        *,
        policy: ServicePolicy = SECONDS_POLICY,
        ship_in: timedelta | None = None,
        payment: Payment | None = None,
        **line_input: Any,
    ) -> WorkflowHandle[Any, LineStatus]:
        """Start a line; `line_input`: more fields of its `LineInput` (a preorder, say)."""
        line_policy = policy.for_channel(request.channel)
        ship_by = request.ordered_at + (ship_in or line_policy.days(30))
        self.store.quantity_of[line_key(request.order_id, request.line_id)] = request.quantity
        return await self.client.start_workflow(
            LINE_WORKFLOW.name,
            LineInput(
                request=request,
                ship_by=ship_by,
                request_hash=canonical_hash(request),
                policy=line_policy,
                payment=payment,
                **line_input,
            ),
            id=line_key(request.order_id, request.line_id),
            task_queue=self.task_queue,
            result_type=LineStatus,
        )


@asynccontextmanager
async def line_worker(client: Client, store: StubStore | None = None) -> AsyncIterator[LineHarness]:
    """A worker of its own running only the line's workflow, over `store`'s stubs."""
    store = store or StubStore()
    task_queue = f"line-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BackorderLineWorkflow],
        activities=store.activities(),
    ):
        yield LineHarness(client, task_queue, store)


async def history_events(handle: WorkflowHandle[Any, Any]) -> defaultdict[str, int]:
    """How many of each event type the workflow's history holds."""
    counts: defaultdict[str, int] = defaultdict(int)
    async for event in handle.fetch_history_events():
        counts[event.WhichOneof("attributes") or ""] += 1
    return counts


async def line_status(handle: WorkflowHandle[Any, Any]) -> LineStatus:
    status: LineStatus = await handle.query(STATUS.name, result_type=LineStatus)
    return status


async def status_when(
    handle: WorkflowHandle[Any, Any], condition: Callable[[LineStatus], bool], within: float = 20
) -> LineStatus:
    """Query the line until its status meets `condition`; fail with the last status."""
    deadline = asyncio.get_running_loop().time() + within
    status = await line_status(handle)
    while not condition(status):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the line never met the condition; last: {status}")
        await asyncio.sleep(0.05)
        status = await line_status(handle)
    return status


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """The workflow's current details, as the Temporal UI shows them."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)
