"""The HTTP API (v1). Paths and field names are part of the product: see DESIGN.md and README.

Every write goes to Temporal (a workflow start or an update) before the API answers 2xx, so an
accepted request is durable. Invalid input is answered 422 with the field named, before anything
is written anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import OperationalError
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api import customers
from api.auth import ActorDep, OptionalActorDep, Role, allow, allow_supplier
from client import (
    BackorderClient,
    CancelRefusedError,
    ConflictError,
    LineNotFoundError,
    UnknownSkuError,
    connect,
)
from config.settings import Settings
from domain.contract.lines import line_key
from domain.line.input import EtaUpdate
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.links import LinkAction
from domain.metrics import Metrics
from domain.policy import ServicePolicy, load_policy
from domain.requests import (
    BackorderRequest,
    CancelBody,
    PurchaseOrderRequest,
    ReceiptRequest,
    SkuRequest,
    SubscriptionRequest,
)
from domain.stock import Availability
from domain.values import IDENTIFIER_PATTERN, Channel, canonical_hash
from store import metrics, records, supply
from store.db import Database, open_store
from store.migrations import StoreSchemaError
from store.tables import SubscriptionRow, as_utc

T = TypeVar("T")
log = logging.getLogger("backorders.api")

IdPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]

LIVE_FIELDS = ("eta", "escalation_level", "next_deadline", "next_action", "consent", "offers")
"""Status fields a running line's workflow knows better than the store."""

WAIT_FOR_WORKFLOW = timedelta(seconds=10)
"""How long a request waits for a workflow's answer before saying it is still under way."""


def field_error(field: str, message: str, kind: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, so clients parse one format."""
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": kind}])


def _unavailable(part: str) -> JSONResponse:
    """503 naming the part that is down; every write is idempotent, so retrying is safe."""
    return JSONResponse(
        {"detail": f"{part} unavailable; asking again is safe"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(
    settings: Settings, *, temporal: Client | None = None, db: Database | None = None
) -> FastAPI:
    """The API app. Given no Temporal client or store, it opens its own at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_production_ready()
        own_db = db is None
        # Migrated here only where that is safe (`store.db.migrates_itself`); elsewhere a store
        # not at this release's revision stops the start with what to run.
        store = db or open_store(settings)
        client = temporal or await connect(settings)

        async def sku_exists(sku: str) -> bool:
            return await asyncio.to_thread(records.sku_exists, store, sku)

        policy = load_policy(settings.policy_file)
        app.state.policy = policy
        app.state.settings = settings
        app.state.db = store
        app.state.temporal = client
        app.state.backorders = BackorderClient(
            client,
            task_queue=settings.task_queue,
            policy=policy,
            sku_exists=sku_exists,
        )
        yield
        if own_db:
            store.dispose()

    app = FastAPI(
        title="backorders",
        version="1",
        description="Backordered order lines carried from sold to shipped or refunded.",
        lifespan=lifespan,
    )

    @app.exception_handler(RPCError)
    async def temporal_unavailable(request: Request, exc: RPCError) -> JSONResponse:
        """Temporal did not answer (down, restarting, overloaded): a 503 the caller may retry,
        since every write is idempotent; other RPC errors are bugs and stay 500s."""
        if exc.status not in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.RESOURCE_EXHAUSTED,
        ):
            log.error("Temporal refused %s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return _unavailable("Temporal is")

    @app.exception_handler(OperationalError)
    async def store_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        """The store did not answer: 503, nothing written (the transaction did not commit)."""
        log.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc.orig)
        return _unavailable("the store is")

    def backorders(request: Request) -> BackorderClient:
        client: BackorderClient = request.app.state.backorders
        return client

    def store(request: Request) -> Database:
        database: Database = request.app.state.db
        return database

    async def in_store(work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    async def require_sku(db: Database, sku: str) -> None:
        """422 naming the field `sku` when the catalog does not have it."""
        if not await in_store(lambda: records.sku_exists(db, sku)):
            raise field_error("sku", f"unknown SKU {sku!r}", "unknown_sku")

    async def _sku_view(db: Database, sku: str) -> dict[str, Any]:
        row = await in_store(lambda: records.get_sku(db, sku))
        if row is None:
            raise HTTPException(404, f"unknown SKU {sku!r}")
        return {
            "sku": row.sku,
            "name": row.name,
            "free_stock": row.free_stock,
            "substitutes": row.substitutes,
        }

    async def guarded(call: Awaitable[T]) -> T:
        """Turn the client's typed errors into the HTTP answers the contract names."""
        try:
            return await call
        except UnknownSkuError as exc:
            raise field_error("sku", str(exc), "unknown_sku") from exc
        except ConflictError as exc:
            raise HTTPException(409, str(exc)) from exc
        except LineNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except CancelRefusedError as exc:
            raise HTTPException(409, f"cannot cancel: {exc}") from exc

    @app.post("/v1/backorders", status_code=201, tags=["order system"])
    async def start_backorder(
        body: BackorderRequest, request: Request, response: Response, actor: ActorDep
    ) -> dict[str, Any]:
        """Start the workflow of one backordered line: 201 new, 200 same body again, 409 clash."""
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        # The store remembers lines longer than Temporal keeps closed workflows.
        key = line_key(body.order_id, body.line_id)
        earlier = await in_store(lambda: records.line_request_hash(store(request), key))
        if earlier is None:
            result = await guarded(backorders(request).start(body))
            created = result.created
        elif earlier == canonical_hash(body):
            created = False
        else:
            raise HTTPException(409, f"{key} was already started with a different request body")
        if not created:
            response.status_code = 200
        return {
            "workflow_id": key,
            "order_id": body.order_id,
            "line_id": body.line_id,
            "created": created,
        }

    @app.get("/v1/backorders/{order_id}/{line_id}", tags=["order system"])
    async def get_backorder(
        order_id: IdPath, line_id: IdPath, request: Request, actor: ActorDep
    ) -> LineStatus:
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        key = line_key(order_id, line_id)
        status = await in_store(lambda: records.get_line_status(store(request), key))
        if status is None:
            # Accepted but not yet recorded by its workflow: the workflow itself answers.
            return await guarded(backorders(request).status(order_id, line_id))
        if status.state.is_final:
            return status
        # The store has the record; a running line's promises live in its workflow.
        try:
            live = await backorders(request).status(order_id, line_id)
        except Exception:
            return status
        return status.model_copy(update={field: getattr(live, field) for field in LIVE_FIELDS})

    @app.get("/v1/backorders", tags=["order system"])
    async def list_backorders(
        request: Request,
        actor: ActorDep,
        sku: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
        state: LineState | None = None,
        order_id: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
        channel: Channel | None = None,
        overdue: Annotated[
            bool, Query(description="only open lines whose ship-by has passed")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[LineStatus]:
        """Lines from the store, newest first, filtered by every parameter given."""
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        return await in_store(
            lambda: records.list_lines(
                store(request),
                sku=sku,
                state=state,
                order_id=order_id,
                channel=channel,
                overdue=overdue,
                limit=limit,
                offset=offset,
            )
        )

    @app.post("/v1/backorders/{order_id}/{line_id}/cancel", tags=["order system"])
    async def cancel_backorder(
        order_id: IdPath,
        line_id: IdPath,
        request: Request,
        actor: OptionalActorDep,
        response: Response,
        body: Annotated[CancelBody | None, Body()] = None,
        token: Annotated[str | None, Query(description="a customer's signed link")] = None,
    ) -> dict[str, Any]:
        """Cancel what has not shipped; held stock goes to the next lines; refund in full.

        The order system and ops use their tokens; a customer uses the signed cancel link."""
        if token is not None:
            return await customers.act_on_line(
                request,
                actor,
                token,
                order_id=order_id,
                line_id=line_id,
                action=LinkAction.CANCEL,
            )
        if actor is None:
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        cancel = body or CancelBody(requested_by=actor.role.value)
        call = backorders(request).cancel(
            order_id,
            line_id,
            reason=cancel.reason,
            requested_by=cancel.requested_by,
            wait=WAIT_FOR_WORKFLOW,
        )
        try:
            # Bounded: with no worker running, the line cannot even accept the cancel.
            result = await asyncio.wait_for(guarded(call), 2 * WAIT_FOR_WORKFLOW.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            raise HTTPException(
                503, "the line did not answer in time (is a worker running?); asking again is safe"
            ) from exc
        if result is None:
            response.status_code = 202
            return {"state": "cancelling", "detail": "accepted; the refund is under way"}
        return result.model_dump(mode="json")

    @app.post("/v1/suppliers/{supplier_id}/receipts", status_code=201, tags=["supplier"])
    async def post_receipt(
        supplier_id: IdPath,
        body: ReceiptRequest,
        request: Request,
        response: Response,
        actor: ActorDep,
    ) -> dict[str, Any]:
        """Stock arrived: allocated to waiting lines in queue order. Idempotent by receipt id."""
        allow_supplier(actor, supplier_id)
        db = store(request)
        await require_sku(db, body.sku)
        if body.po_id is not None:
            po_id = body.po_id
            order = await in_store(lambda: records.get_purchase_order(db, supplier_id, po_id))
            if order is None or order.sku != body.sku:
                raise field_error(
                    "po_id",
                    f"no purchase order {po_id} of {body.sku} from {supplier_id}",
                    "unknown_po",
                )
        # The store remembers receipts longer than Temporal keeps closed workflows.
        earlier = await in_store(lambda: records.get_receipt(db, supplier_id, body.receipt_id))
        if earlier is not None and earlier.request_hash != canonical_hash(body):
            raise HTTPException(409, f"receipt {body.receipt_id} was reported with other values")
        result = await guarded(backorders(request).receive(supplier_id, body))
        created = result.created and earlier is None
        if not created:
            response.status_code = 200
        return {
            "workflow_id": result.workflow_id,
            "receipt_id": body.receipt_id,
            "created": created,
        }

    @app.put("/v1/suppliers/{supplier_id}/purchase-orders/{po_id}", tags=["supplier"])
    async def put_purchase_order(
        supplier_id: IdPath,
        po_id: IdPath,
        body: PurchaseOrderRequest,
        request: Request,
        response: Response,
        actor: ActorDep,
    ) -> dict[str, Any]:
        """A PO, or its new date or quantity: the ETAs of the lines waiting for it follow."""
        allow_supplier(actor, supplier_id)
        db = store(request)
        await require_sku(db, body.sku)
        earlier = await in_store(lambda: records.get_purchase_order(db, supplier_id, po_id))
        if earlier is not None and earlier.sku != body.sku and earlier.received_quantity:
            raise field_error("sku", "stock already arrived on this PO for another SKU", "conflict")
        await guarded(backorders(request).purchase_order(supplier_id, po_id, body))
        response.status_code = 200 if earlier is not None else 201
        row = await in_store(lambda: records.get_purchase_order(db, supplier_id, po_id))
        assert row is not None
        return {
            "supplier_id": supplier_id,
            "po_id": po_id,
            "sku": row.sku,
            "quantity": row.quantity,
            "received_quantity": row.received_quantity,
            "inbound": row.inbound,
            "expected_at": as_utc(row.expected_at),
        }

    @app.get("/v1/availability/{sku}", tags=["storefront"])
    async def get_availability(sku: IdPath, request: Request) -> Availability:
        """The label a product page shows, and the facts behind it. Public, like the page."""
        policy: ServicePolicy = request.app.state.policy
        found = await in_store(
            lambda: supply.availability(
                store(request),
                sku,
                receiving=policy.days(policy.receiving_days),
                low_stock=policy.low_stock_threshold,
                window=policy.days(policy.label_window_days),
            )
        )
        if found is None:
            raise HTTPException(404, f"unknown SKU {sku!r}")
        return found

    @app.post("/v1/subscriptions", status_code=201, tags=["storefront"])
    async def subscribe(
        body: SubscriptionRequest, request: Request, actor: ActorDep
    ) -> dict[str, Any]:
        """Back-in-stock alert: one message the next time the SKU has stock for new orders."""
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        db = store(request)
        await require_sku(db, body.sku)
        row = SubscriptionRow(
            id=f"sub-{uuid.uuid4().hex[:16]}",
            sku=body.sku,
            customer_id=body.customer.id,
            email=body.customer.email,
        )
        await in_store(lambda: records.add_subscription(db, row))
        return {"subscription_id": row.id, "sku": row.sku, "status": row.status}

    @app.delete("/v1/subscriptions/{subscription_id}", tags=["storefront"])
    async def unsubscribe(
        subscription_id: IdPath, request: Request, actor: ActorDep
    ) -> dict[str, Any]:
        allow(actor, Role.ORDER_SYSTEM, Role.OPS)
        row = await in_store(lambda: records.cancel_subscription(store(request), subscription_id))
        if row is None:
            raise HTTPException(404, f"no subscription {subscription_id}")
        return {"subscription_id": row.id, "sku": row.sku, "status": row.status}

    @app.put("/v1/skus/{sku}", tags=["catalog"])
    async def put_sku(
        sku: IdPath, body: SkuRequest, request: Request, response: Response, actor: ActorDep
    ) -> dict[str, Any]:
        """Create or update a catalog entry; free stock it sets goes to waiting lines at once."""
        allow(actor, Role.OPS, Role.ORDER_SYSTEM)
        db = store(request)
        if sku in body.substitutes:
            raise field_error("substitutes", "a SKU cannot substitute itself", "value_error")
        known = await in_store(lambda: records.known_skus(db, body.substitutes))
        for position, substitute in enumerate(body.substitutes):
            if substitute not in known:
                raise HTTPException(
                    422,
                    [
                        {
                            "loc": ["body", "substitutes", position],
                            "msg": f"unknown SKU {substitute!r}",
                            "type": "unknown_sku",
                        }
                    ],
                )
        existed = await in_store(lambda: records.sku_exists(db, sku))
        result = await guarded(backorders(request).apply_sku(sku, body))
        response.status_code = 200 if existed else 201
        return {
            **await _sku_view(db, sku),
            "allocated_to_waiting_lines": sum(a.quantity for a in result.allocations),
        }

    @app.get("/v1/skus/{sku}", tags=["catalog"])
    async def get_sku(sku: IdPath, request: Request, actor: ActorDep) -> dict[str, Any]:
        allow(actor, Role.OPS, Role.ORDER_SYSTEM)
        return await _sku_view(store(request), sku)

    @app.post("/v1/backorders/{order_id}/{line_id}/eta", tags=["operations"])
    async def set_eta(
        order_id: IdPath, line_id: IdPath, body: EtaUpdate, request: Request, actor: ActorDep
    ) -> dict[str, Any]:
        """Tell a waiting line its expected ship date moved (or that none can be given)."""
        allow(actor, Role.OPS)
        await guarded(backorders(request).set_eta(order_id, line_id, body.eta))
        return {"workflow_id": line_key(order_id, line_id), "eta": body.eta}

    @app.get("/v1/outreach", tags=["operations"])
    async def list_outreach(
        request: Request,
        actor: ActorDep,
        status: Annotated[str | None, Query(pattern="^(open|done)$")] = "open",
    ) -> list[dict[str, Any]]:
        """Personal-outreach tasks for customer service, oldest first."""
        allow(actor, Role.OPS)
        rows = await in_store(lambda: records.list_outreach(store(request), status=status))
        return [row.model_dump(mode="json") for row in rows]

    @app.get("/v1/metrics", tags=["operations"])
    async def get_metrics(request: Request, actor: ActorDep) -> Metrics:
        """Business figures from the store; definitions in the README."""
        allow(actor, Role.OPS)
        return await in_store(lambda: metrics.collect(store(request)))

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def get_prometheus(request: Request, actor: ActorDep) -> PlainTextResponse:
        """The same figures for a Prometheus scrape (with the ops token as its credentials).
        The Temporal SDK's worker metrics are on each worker's own endpoint."""
        allow(actor, Role.OPS)
        figures = await in_store(lambda: metrics.collect(store(request)))
        return PlainTextResponse(
            metrics.prometheus(figures), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    app.include_router(customers.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz(request: Request) -> JSONResponse:
        """200 when the store and Temporal both answer; 503 naming the part that does not."""
        checks: dict[str, str] = {}
        try:
            await in_store(lambda: records.ping(store(request)))
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unavailable: {type(exc).__name__}"
        try:
            client: Client = request.app.state.temporal
            await client.service_client.check_health(timeout=timedelta(seconds=3))
            checks["temporal"] = "ok"
        except Exception as exc:
            checks["temporal"] = f"unavailable: {type(exc).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **checks},
            status_code=200 if healthy else 503,
        )

    return app


def main() -> None:
    """`python -m api.app`: the API on its own, as production runs it (as many as needed behind
    a load balancer, beside the workers), on `BACKORDERS_API_HOST`:`BACKORDERS_API_PORT`.

    It refuses to start, in one line naming what to fix, on settings unfit for production or a
    store not at this release's schema revision."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings()
        settings.require_production_ready()
        db = open_store(settings)
    except (ValueError, StoreSchemaError) as exc:
        raise SystemExit(f"api: {exc}") from None
    uvicorn.run(create_app(settings, db=db), host=settings.api_host, port=settings.api_port)


if __name__ == "__main__":
    main()
