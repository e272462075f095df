"""`Admission`: the one way into the service, for the HTTP API, the Python client and the CLI.

Every operation takes the caller (`Actor`, from its credential) and the request as it came (a
parsed model or a mapping), and:

1. validates it with the `domain.requests` model, rules relative to now included (`admit`);
2. checks it against the store: SKUs and purchase orders exist, ids are not taken by another
   request (the request's hash is kept in the store and in the workflow's memo);
3. carries it out through Temporal (`admission.workflows`), once: starts and receipts are
   idempotent by their ids; requests that are not (stock counts, catalog updates, purchase
   orders, ETAs, subscriptions) apply every time, unless they come with an Idempotency-Key,
   whose repeat is answered as the first was (`store.idempotency`);
4. answers with a `domain.responses` model and the HTTP status it stands for (`Done`), or
   raises an `admission.errors` error. Who did what is recorded from the actor, never from
   the body.

It also serves the read models: a line's status from the store merged with its workflow's
live fields, lists, SKUs, availability, outreach tasks, metrics, health.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import OperationalError
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError

from admission.actors import Actor, Role
from admission.errors import Conflict, InvalidRequest, NotFound, Unavailable
from admission.workflows import Workflows
from config.settings import Settings
from domain.contract.lines import line_key
from domain.line.choices import AgreeToWait
from domain.line.effects import CancelRequest
from domain.line.input import EtaUpdate
from domain.line.page import CustomerPage, customer_page
from domain.line.payment import NewPaymentMethod, PaymentView
from domain.line.status import LineStatus
from domain.links import PAGE_ACTIONS, LinkAction
from domain.metrics import Metrics
from domain.policy import ServicePolicy, load_policy
from domain.requests import (
    BackorderRequest,
    CancelBody,
    EtaRequest,
    LineQuery,
    PageChoiceBody,
    PaymentMethodBody,
    PurchaseOrderRequest,
    ReceiptRequest,
    SalesDay,
    SalesDayRequest,
    SkuRequest,
    SubscriptionRequest,
    SurveyBody,
    admit,
)
from domain.responses import (
    CancelAnswer,
    Cancelled,
    Cancelling,
    ChoiceAnswer,
    EtaAnswer,
    Health,
    LocationStock,
    OfferAccepted,
    OutreachTask,
    PurchaseOrderAnswer,
    ReceiptAnswer,
    SalesDayAnswer,
    SkuAnswer,
    SkuView,
    StartAnswer,
    SubscriptionAnswer,
    Substituted,
    SupplierPerformance,
    Waiting,
)
from domain.stock import Availability
from domain.values import Identifier, canonical_hash
from store import (
    feedback,
    idempotency,
    locations,
    metrics,
    records,
    selling,
    stock,
    suppliers,
    supply,
)
from store import health as marketplace_health
from store.db import Database
from store.idempotency import Found
from store.tables import SubscriptionRow, SurveyRow, as_utc

log = logging.getLogger("backorders.api")

A = TypeVar("A", bound=BaseModel)
T = TypeVar("T")

WAIT_FOR_WORKFLOW = timedelta(seconds=10)
"""How long a cancel waits for the line's answer before saying it is still under way (202)."""

LIVE_FIELDS = (
    "eta",
    "escalation_level",
    "next_deadline",
    "next_action",
    "consent",
    "offers",
    "payment",
)
"""Status fields a running line's workflow knows better than the store."""

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
"""An Idempotency-Key: 1 to 200 visible ASCII characters (a UUID, say)."""
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

CUSTOMER_CANCEL_REASON = "the customer cancelled"

_identifier: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True)
class Done(Generic[A]):
    """What a write did: its answer, and the HTTP status that stands for it (201 created,
    200 done or repeated, 202 accepted and under way)."""

    status: HTTPStatus
    answer: A


@contextlib.contextmanager
def _store_answers() -> Iterator[None]:
    """The store not answering becomes `Unavailable`."""
    try:
        yield
    except OperationalError as exc:
        raise Unavailable("the store") from exc


class Admission:
    """Validation, idempotency and read models over one store and one Temporal namespace."""

    def __init__(
        self,
        *,
        settings: Settings,
        temporal: Client,
        db: Database,
        policy: ServicePolicy | None = None,
        wait: timedelta = WAIT_FOR_WORKFLOW,
    ) -> None:
        self.settings = settings
        self.temporal = temporal
        self.db = db
        self.policy = policy or load_policy(settings.policy_file)
        self.wait = wait
        self.workflows = Workflows(temporal, task_queue=settings.task_queue, policy=self.policy)

    # ---- lines ----------------------------------------------------------------------------

    async def start(self, actor: Actor, body: BaseModel | Mapping[str, Any]) -> Done[StartAnswer]:
        """Start one backordered line: 201 new, 200 the same request again; Conflict for the
        same ids with another body."""
        request = _admit(BackorderRequest, body)
        key = line_key(request.order_id, request.line_id)
        named = [request.sku, *(line.sku for line in request.in_stock_lines)]
        # One read: the line recorded under these ids (the store remembers lines longer than
        # Temporal keeps closed workflows), else the SKUs checked and the line admitted; a write
        # only for a line whose SKU has a backorder limit.
        door = await self._read(lambda: selling.read_door(self.db, key, request.sku, named))
        if door.to_judge:
            known = door.known
            door = await self._store(
                lambda: selling.judge_start(self.db, key, request.sku, request.quantity, known)
            )
        request_hash = canonical_hash(request)
        if door.earlier_hash is None:
            _require_skus(request, door.known)
            assert door.admitted is not None, "every SKU known: the line was judged"
            started = await self.workflows.start_line(
                request,
                over_limit=door.admitted.over_limit,
                preorder=door.admitted.preorder,
                request_hash=request_hash,
            )
            created = started.created
        elif door.earlier_hash == request_hash:
            created = False
        else:
            raise Conflict(f"{key} was already started with a different request body")
        answer = StartAnswer(
            workflow_id=key,
            order_id=request.order_id,
            line_id=request.line_id,
            created=created,
            over_limit=door.over_limit,
        )
        return Done(HTTPStatus.CREATED if created else HTTPStatus.OK, answer)

    async def line(self, order_id: str, line_id: str) -> LineStatus:
        """A line from the store, with what its running workflow knows better (its promises);
        before its workflow has queued it, from the workflow alone."""
        order_id, line_id = _ids(order_id=order_id, line_id=line_id)
        key = line_key(order_id, line_id)
        status = await self._store(lambda: records.get_line_status(self.db, key))
        if status is None:
            return await self.workflows.line_status(order_id, line_id)
        if status.state.is_final:
            return status
        try:
            live = await self.workflows.line_status(order_id, line_id)
        except Exception:  # a line without a worker still has its record
            return status
        return status.model_copy(update={field: getattr(live, field) for field in LIVE_FIELDS})

    async def lines(self, query: BaseModel | Mapping[str, Any] | None = None) -> list[LineStatus]:
        """Lines from the store, newest first, filtered by every value of `query` given."""
        filters = _admit(LineQuery, query or {}, location="query")
        return await self._store(
            lambda: records.list_lines(
                self.db,
                sku=filters.sku,
                state=filters.state,
                order_id=filters.order_id,
                channel=filters.channel,
                overdue=filters.overdue,
                limit=filters.limit,
                offset=filters.offset,
            )
        )

    async def cancel(
        self,
        actor: Actor,
        order_id: str,
        line_id: str,
        body: BaseModel | Mapping[str, Any] | None = None,
    ) -> Done[CancelAnswer]:
        """Cancel what has not shipped: 200 with the refund, 202 while it is under way. The
        line records the actor's role as who cancelled; a customer's reason is fixed."""
        order_id, line_id = _ids(order_id=order_id, line_id=line_id)
        admitted = _admit(CancelBody, body or {})
        reason, requested_by = admitted.reason, actor.role.value
        if actor.role is Role.CUSTOMER:
            reason = CUSTOMER_CANCEL_REASON
        elif admitted.buyer_requested:
            if actor.role not in (Role.ORDER_SYSTEM, Role.OPS):
                raise InvalidRequest(
                    "buyer_requested", "only the order system or ops relay a buyer's cancel"
                )
            # Who asked is the buyer; who relayed it stays in the reason (within its 200).
            relayed = f" (the buyer asked; via {actor.role.value})"
            reason, requested_by = reason[: 200 - len(relayed)] + relayed, "customer"
        request = CancelRequest(reason=reason, requested_by=requested_by)
        try:
            # Bounded: with no worker running, the line cannot even accept the cancel.
            result = await asyncio.wait_for(
                self.workflows.cancel(order_id, line_id, request, wait=self.wait),
                2 * self.wait.total_seconds(),
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            raise Unavailable(
                "the line",
                "the line did not answer in time (is a worker running?); asking again is safe",
            ) from exc
        if result is None:
            return Done(
                HTTPStatus.ACCEPTED,
                CancelAnswer(state="cancelling", detail=Cancelling().detail),
            )
        answer = CancelAnswer(
            state=result.state, released_quantity=result.released_quantity, refund=result.refund
        )
        return Done(HTTPStatus.OK, answer)

    async def choose(
        self,
        actor: Actor,
        order_id: str,
        line_id: str,
        action: LinkAction,
        choice: str | None = None,
    ) -> ChoiceAnswer:
        """A customer's choice on a waiting line (signed link, or the order system or ops for
        the customer): take an offer, take a substitute (`choice` names them), wait, cancel."""
        order_id, line_id = _ids(order_id=order_id, line_id=line_id)
        if action in PAGE_ACTIONS or action is LinkAction.UPDATE_PAYMENT:
            raise InvalidRequest("action", f"{action.value} is not a choice on a waiting line")
        if action is LinkAction.ACCEPT_OFFER:
            offer = await self.workflows.accept_offer(
                order_id, line_id, _checked("offer_id", choice)
            )
            return OfferAccepted(offer=offer)
        if action is LinkAction.SUBSTITUTE:
            status = await self.workflows.take_substitute(
                order_id, line_id, _checked("sku", choice)
            )
            return Substituted(sku=status.sku, state=status.state)
        if action is LinkAction.WAIT:
            status = await self.workflows.agree_to_wait(
                order_id, line_id, AgreeToWait(requested_by=actor.role.value)
            )
            return Waiting(consent=status.consent, eta=status.eta)
        done = await self.cancel(actor, order_id, line_id)
        if done.answer.state == "cancelling":
            return Cancelling()
        return Cancelled(
            state=done.answer.state,
            released_quantity=done.answer.released_quantity or 0,
            refund=done.answer.refund,
        )

    async def customer_page(self, line: str) -> CustomerPage:
        """The line named by a customer's status link, as its customer reads it: the item by
        its catalog name, the choices open now, in the customer's language (else the
        channel's, as their messages)."""
        _, order_id, line_id = line.split(":", 2)
        status = await self.line(order_id, line_id)
        row = await self._store(lambda: records.get_sku(self.db, status.sku))
        still_due = status.quantity - status.shipped_quantity
        substitutes = (
            []
            if status.state.is_final
            else await self._store(
                lambda: stock.in_stock_substitutes(self.db, status.sku, still_due)
            )
        )
        channel_locale = self.policy.for_channel(status.channel).channel.locale
        return customer_page(
            status,
            product=row.name if row is not None else status.sku,
            substitutes=substitutes,
            now=datetime.now(UTC),
            locale=status.customer.locale or channel_locale,
        )

    async def choose_on_page(
        self, actor: Actor, line: str, body: BaseModel | Mapping[str, Any]
    ) -> ChoiceAnswer:
        """A button pressed on the line's status page: the same choice as its own link's."""
        pressed = _admit(PageChoiceBody, body)
        _, order_id, line_id = line.split(":", 2)
        return await self.choose(
            actor, order_id, line_id, LinkAction(pressed.action), pressed.choice
        )

    async def survey(self, line: str) -> tuple[str, SurveyRow | None]:
        """The item's name for a line's survey page, and its answer if it gave one."""
        status = await self.line(*line.split(":", 2)[1:])
        row = await self._store(lambda: records.get_sku(self.db, status.sku))
        answer = await self._store(lambda: feedback.find_survey(self.db, line))
        return (row.name if row is not None else status.sku), answer

    async def answer_survey(self, line: str, body: BaseModel | Mapping[str, Any]) -> None:
        """The customer's one answer to the survey after the wait; Conflict for a second."""
        answer = _admit(SurveyBody, body)
        channel = await self._store(lambda: feedback.line_channel(self.db, line))
        if channel is None:
            raise NotFound(f"no line {line}")
        row = SurveyRow(line_key=line, channel=channel, score=answer.score, comment=answer.comment)
        if not await self._store(lambda: feedback.answer_survey(self.db, row)):
            raise Conflict("You have already answered for this item. Thank you!")

    async def update_payment(
        self, actor: Actor, order_id: str, line_id: str, body: BaseModel | Mapping[str, Any]
    ) -> PaymentView:
        """Another payment method for a line whose hold renewal was declined (the storefront
        collected the card; this is its reference): the line holds what remains on it.
        Refused (PaymentDeclined) when the processor declines it too."""
        order_id, line_id = _ids(order_id=order_id, line_id=line_id)
        method = _admit(PaymentMethodBody, body)
        return await self.workflows.update_payment(
            order_id, line_id, NewPaymentMethod(reference=method.reference)
        )

    async def set_eta(
        self,
        actor: Actor,
        order_id: str,
        line_id: str,
        body: BaseModel | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Done[EtaAnswer]:
        """Tell a waiting line its expected ship date moved (or that none can be given). An ETA
        is a level: sent again, it is applied again, unless under the same Idempotency-Key."""
        order_id, line_id = _ids(order_id=order_id, line_id=line_id)
        request = _admit(EtaRequest, body)
        key = line_key(order_id, line_id)

        async def apply(_: str) -> Done[EtaAnswer]:
            if request.eta is not None:
                ordered_at = await self._store(lambda: records.line_ordered_at(self.db, key))
                if ordered_at is None:  # accepted, not yet queued: its workflow knows
                    ordered_at = (await self.workflows.line_status(order_id, line_id)).ordered_at
                if request.eta < ordered_at:
                    raise InvalidRequest(
                        "eta",
                        f"must not be before the line's ordered_at ({ordered_at.isoformat()})",
                        kind="date_order",
                    )
            await self.workflows.set_eta(order_id, line_id, EtaUpdate(eta=request.eta))
            return Done(HTTPStatus.OK, EtaAnswer(workflow_id=key, eta=request.eta))

        path = f"/v1/backorders/{order_id}/{line_id}/eta"
        return await self._keyed(actor, "POST", path, idempotency_key, request, EtaAnswer, apply)

    async def set_sales_day(
        self, actor: Actor, channel: str, day: str, body: BaseModel | Mapping[str, Any]
    ) -> Done[SalesDayAnswer]:
        """The order lines sold on a channel on a UTC day (a level): 201 a new day, 200 the
        day's count replaced."""
        where = _admit(SalesDay, {"channel": channel, "day": day}, location="path")
        count = _admit(SalesDayRequest, body).order_lines
        created = await self._store(
            lambda: feedback.set_sales_day(self.db, where.channel.value, where.day, count)
        )
        answer = SalesDayAnswer(channel=where.channel, day=where.day, order_lines=count)
        return Done(HTTPStatus.CREATED if created else HTTPStatus.OK, answer)

    # ---- suppliers ------------------------------------------------------------------------

    async def receive(
        self, actor: Actor, supplier_id: str, body: BaseModel | Mapping[str, Any]
    ) -> Done[ReceiptAnswer]:
        """Stock arrived: allocated to waiting lines in queue order. Idempotent by receipt id:
        201 new, 200 repeated; Conflict for the same id with other values."""
        (supplier_id,) = _ids(supplier_id=supplier_id)
        receipt = _admit(ReceiptRequest, body)
        if not await self._store(lambda: records.sku_exists(self.db, receipt.sku)):
            raise _unknown_sku(("sku",), receipt.sku)
        if receipt.po_id is not None:
            po_id = receipt.po_id
            order = await self._store(
                lambda: records.get_purchase_order(self.db, supplier_id=supplier_id, po_id=po_id)
            )
            if order is None or order.sku != receipt.sku:
                raise InvalidRequest(
                    "po_id",
                    f"no purchase order {po_id} of {receipt.sku} from {supplier_id}",
                    kind="unknown_po",
                )
        # The store remembers receipts longer than Temporal keeps closed workflows.
        earlier = await self._store(
            lambda: records.get_receipt(
                self.db, supplier_id=supplier_id, receipt_id=receipt.receipt_id
            )
        )
        if earlier is not None and earlier.request_hash != canonical_hash(receipt):
            raise Conflict(f"receipt {receipt.receipt_id} was reported with other values")
        started = await self.workflows.receive(supplier_id, receipt)
        created = started.created and earlier is None
        answer = ReceiptAnswer(
            workflow_id=started.workflow_id, receipt_id=receipt.receipt_id, created=created
        )
        return Done(HTTPStatus.CREATED if created else HTTPStatus.OK, answer)

    async def put_purchase_order(
        self,
        actor: Actor,
        supplier_id: str,
        po_id: str,
        body: BaseModel | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Done[PurchaseOrderAnswer]:
        """A PO, or its new date or quantity: 201 new, 200 changed or sent again; the ETAs of
        the lines waiting for it follow."""
        supplier_id, po_id = _ids(supplier_id=supplier_id, po_id=po_id)
        order = _admit(PurchaseOrderRequest, body)

        async def apply(unique: str) -> Done[PurchaseOrderAnswer]:
            if not await self._store(lambda: records.sku_exists(self.db, order.sku)):
                raise _unknown_sku(("sku",), order.sku)
            earlier = await self._store(
                lambda: records.get_purchase_order(self.db, supplier_id=supplier_id, po_id=po_id)
            )
            if earlier is not None and earlier.sku != order.sku and earlier.received_quantity:
                raise InvalidRequest(
                    "sku", "stock already arrived on this PO for another SKU", kind="conflict"
                )
            await self.workflows.apply_purchase_order(supplier_id, po_id, order, unique=unique)
            row = await self._store(
                lambda: records.get_purchase_order(self.db, supplier_id=supplier_id, po_id=po_id)
            )
            assert row is not None, "the purchase order's workflow recorded it"
            answer = PurchaseOrderAnswer(
                supplier_id=supplier_id,
                po_id=po_id,
                sku=row.sku,
                quantity=row.quantity,
                received_quantity=row.received_quantity,
                inbound=row.inbound,
                expected_at=as_utc(row.expected_at),
            )
            return Done(HTTPStatus.OK if earlier is not None else HTTPStatus.CREATED, answer)

        path = f"/v1/suppliers/{supplier_id}/purchase-orders/{po_id}"
        return await self._keyed(
            actor, "PUT", path, idempotency_key, order, PurchaseOrderAnswer, apply
        )

    async def supplier_performance(self, supplier_id: str) -> SupplierPerformance:
        """A supplier's record against its purchase orders (docs/selling.md)."""
        (supplier_id,) = _ids(supplier_id=supplier_id)
        dates = self.policy.supplier_dates
        grace = self.policy.days(dates.on_time_grace_days)
        return await self._store(
            lambda: suppliers.performance(
                self.db, supplier_id, dates, grace=grace, now=datetime.now(UTC)
            )
        )

    # ---- catalog ----------------------------------------------------------------------------

    async def put_sku(
        self,
        actor: Actor,
        sku: str,
        body: BaseModel | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Done[SkuAnswer]:
        """Create (201) or update (200) a catalog entry. Its free stock is a stock count: a
        level, set every time it is sent (a line may have taken the units since), unless the
        request repeats an Idempotency-Key."""
        (sku,) = _ids(sku=sku)
        request = _admit(SkuRequest, body)
        if sku in request.substitutes:
            raise InvalidRequest("substitutes", "a SKU cannot substitute itself")

        async def apply(unique: str) -> Done[SkuAnswer]:
            known = await self._store(lambda: records.known_skus(self.db, request.substitutes))
            for position, substitute in enumerate(request.substitutes):
                if substitute not in known:
                    raise _unknown_sku(("substitutes", position), substitute)
            existed = await self._store(lambda: records.sku_exists(self.db, sku))
            result = await self.workflows.apply_sku(sku, request, unique=unique)
            view = await self.sku(sku)
            answer = SkuAnswer(
                **view.model_dump(),
                allocated_to_waiting_lines=sum(a.quantity for a in result.allocations),
            )
            return Done(HTTPStatus.OK if existed else HTTPStatus.CREATED, answer)

        return await self._keyed(
            actor, "PUT", f"/v1/skus/{sku}", idempotency_key, request, SkuAnswer, apply
        )

    async def sku(self, sku: str) -> SkuView:
        (sku,) = _ids(sku=sku)
        found = await self._store(lambda: locations.stock_by_location(self.db, sku))
        if found is None:
            raise NotFound(f"unknown SKU {sku!r}")
        row, located = found
        return SkuView(
            locations={
                name: LocationStock(free_stock=free, inbound=inbound)
                for name, (free, inbound) in located.items()
            },
            stock={name: free for name, (free, _) in located.items()},
            sku=row.sku,
            name=row.name,
            free_stock=row.free_stock,
            substitutes=list(row.substitutes),
            price=row.price,
            backorder_limit=row.backorder_limit,
            release_at=as_utc(row.release_at) if row.release_at else None,
            ship_before_release=row.ship_before_release,
        )

    async def availability(self, sku: str) -> Availability:
        """The label a product page shows, and the facts behind it."""
        (sku,) = _ids(sku=sku)
        policy = self.policy
        found = await self._store(
            lambda: supply.availability(
                self.db,
                sku,
                receiving=policy.days(policy.receiving_days),
                low_stock=policy.low_stock_threshold,
                window=policy.days(policy.label_window_days),
                dates=policy.supplier_dates,
            )
        )
        if found is None:
            raise NotFound(f"unknown SKU {sku!r}")
        return found

    async def subscribe(
        self,
        actor: Actor,
        body: BaseModel | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Done[SubscriptionAnswer]:
        """Back-in-stock alert: one message the next time the SKU has stock for new orders.
        Each request makes a subscription, unless it repeats an Idempotency-Key."""
        request = _admit(SubscriptionRequest, body)

        async def apply(unique: str) -> Done[SubscriptionAnswer]:
            if not await self._store(lambda: records.sku_exists(self.db, request.sku)):
                raise _unknown_sku(("sku",), request.sku)
            row = SubscriptionRow(
                id=f"sub-{unique[:16]}",
                sku=request.sku,
                customer_id=request.customer.id,
                email=request.customer.email,
            )
            await self._store(lambda: records.add_subscription(self.db, row))
            answer = SubscriptionAnswer(subscription_id=row.id, sku=row.sku, status=row.status)
            return Done(HTTPStatus.CREATED, answer)

        return await self._keyed(
            actor, "POST", "/v1/subscriptions", idempotency_key, request, SubscriptionAnswer, apply
        )

    async def unsubscribe(self, subscription_id: str) -> SubscriptionAnswer:
        (subscription_id,) = _ids(subscription_id=subscription_id)
        row = await self._store(lambda: records.cancel_subscription(self.db, subscription_id))
        if row is None:
            raise NotFound(f"no subscription {subscription_id}")
        return SubscriptionAnswer(subscription_id=row.id, sku=row.sku, status=row.status)

    # ---- operations -------------------------------------------------------------------------

    async def outreach(self, status: str | None = "open") -> list[OutreachTask]:
        """Personal-outreach tasks for customer service, oldest first."""
        rows = await self._store(lambda: records.list_outreach(self.db, status=status))
        return [
            OutreachTask.model_validate(row.model_dump() | {"created_at": as_utc(row.created_at)})
            for row in rows
        ]

    async def metrics(self) -> Metrics:
        """Business figures from the store, with each channel's marketplace health against the
        policy's thresholds; definitions in the README and docs/observability.md."""

        def read() -> Metrics:
            figures = metrics.collect(self.db)
            health = marketplace_health.collect(self.db, self.policy, figures.generated_at)
            return figures.model_copy(update={"marketplace_health": health})

        return await self._store(read)

    async def prometheus(self, accept: str | None = None) -> tuple[bytes, str]:
        """The same figures for a Prometheus scrape, and the content type negotiated from the
        scraper's `Accept` (OpenMetrics when it asks for it, else the text format 0.0.4)."""
        figures = await self.metrics()
        return metrics.exposition(figures, figures.marketplace_health, accept=accept)

    async def health(self) -> Health:
        """Whether the store and Temporal answer, each named."""
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(records.ping, self.db)
            checks["store"] = "ok"
        except Exception as exc:
            log.warning("health: the store did not answer: %r", exc)
            checks["store"] = f"unavailable: {type(exc).__name__}"
        try:
            await self.temporal.service_client.check_health(timeout=timedelta(seconds=3))
            checks["temporal"] = "ok"
        except Exception as exc:
            # The answer names only the part; the log keeps the status and message for ops.
            log.warning("health: Temporal did not answer: %r", exc)
            checks["temporal"] = f"unavailable: {type(exc).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        return Health(status="ok" if healthy else "unavailable", **checks)

    # ---- plumbing ---------------------------------------------------------------------------

    async def _store(self, work: Callable[[], T]) -> T:
        """Blocking store work in a thread; the store not answering becomes `Unavailable`
        (the transaction did not commit: nothing was written)."""
        with _store_answers():
            return await asyncio.to_thread(work)

    async def _read(self, read: Callable[[], T]) -> T:
        """A read-only store call. On SQLite it runs here, on the event loop: a lookup by key in
        a local file whose readers never wait for its writer (WAL) costs a fraction of a
        millisecond, less than the hand-off to a thread and back, which also queues the loop
        behind the thread for the interpreter's lock (measured: a start through the API went
        from 0.76-0.85 to 0.80-1.01 of raw starts, docs/performance.md). A store across the
        network is read in a thread, as `_store`."""
        if not self.db.is_sqlite:
            return await self._store(read)
        with _store_answers():
            return read()

    async def _keyed(
        self,
        actor: Actor,
        method: str,
        path: str,
        key: str | None,
        request: BaseModel,
        answer: type[A],
        apply: Callable[[str], Awaitable[Done[A]]],
    ) -> Done[A]:
        """Carry out a request that is not idempotent by its own ids: every time, under a new
        unique name; or, with an Idempotency-Key, once per key (scoped to the caller, the
        method and the path), its answer kept and given again to the same request, and the
        key refused for another body."""
        if key is None:
            return await apply(uuid.uuid4().hex)
        if not _KEY.match(key):
            raise InvalidRequest(
                "idempotency-key",
                "must be 1 to 200 visible ASCII characters (a UUID, say)",
                kind="string_pattern_mismatch",
                location="header",
            )
        scope = _scope(f"{actor.identity} {method} {path}")
        request_hash = canonical_hash(request)
        claim = await self._store(
            lambda: idempotency.claim(self.db, scope=scope, key=key, request_hash=request_hash)
        )
        if claim.found is Found.OTHER_BODY:
            raise InvalidRequest(
                "idempotency-key",
                "this Idempotency-Key was sent with another body: use a new key for a new request",
                kind="idempotency_key_reused",
                location="header",
            )
        if claim.found is Found.IN_PROGRESS:
            raise Conflict("a request with this Idempotency-Key is still being answered; ask again")
        if claim.found is Found.ANSWERED:
            return Done(
                HTTPStatus(claim.status_code), answer.model_validate_json(claim.response_json)
            )
        # A retry under the key after a lost answer finds the same workflow, not a new one.
        unique = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        try:
            done = await apply(unique)
        except Exception:
            with contextlib.suppress(Exception):
                await self._store(lambda: idempotency.release(self.db, scope=scope, key=key))
            raise
        await self._store(
            lambda: idempotency.complete(
                self.db,
                scope=scope,
                key=key,
                status_code=int(done.status),
                response_json=done.answer.model_dump_json(),
            )
        )
        return done


def _admit(model: type[A], body: BaseModel | Mapping[str, Any], *, location: str = "body") -> A:
    try:
        return admit(model, body)
    except ValidationError as exc:
        raise InvalidRequest.from_validation(exc, location=location) from None


def _ids(**ids: str) -> tuple[str, ...]:
    """Path ids, by the one pattern every id follows (the API's paths check it too)."""
    return tuple(_checked(name, value, location="path") for name, value in ids.items())


def _checked(name: str, value: str | None, *, location: str = "path") -> str:
    try:
        return _identifier.validate_python(value)
    except ValidationError as exc:
        raise InvalidRequest(
            name, exc.errors()[0]["msg"], kind=exc.errors()[0]["type"], location=location
        ) from None


def _require_skus(request: BackorderRequest, known: frozenset[str]) -> None:
    """The line's SKU and those of its order's in-stock lines are in the catalog."""
    if request.sku not in known:
        raise _unknown_sku(("sku",), request.sku)
    for position, line in enumerate(request.in_stock_lines):
        if line.sku not in known:
            raise _unknown_sku(("in_stock_lines", position, "sku"), line.sku)


def _unknown_sku(loc: tuple[str | int, ...], sku: str) -> InvalidRequest:
    return InvalidRequest(
        loc, f"unknown SKU {sku!r}: create it with PUT /v1/skus/{sku} first", kind="unknown_sku"
    )


def _scope(text: str) -> str:
    """The key's scope as the store keeps it (200 characters at most)."""
    return text if len(text) <= 200 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()
