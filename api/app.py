"""The HTTP API (v1). Paths and field names are part of the product: see DESIGN.md and README.

`create_app` only assembles: the service layer (`admission`) opened at startup, the routers of
each actor (`api.routers`), the error mapping (`api.errors`), and the OpenAPI document with the
links between operations that stateful fuzzing follows. Every write goes to Temporal before
the API answers 2xx, so an accepted request is durable; invalid input is answered 422 with the
field named, before anything is written anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from temporalio.client import Client

from admission import Admission
from api import errors
from api.pages import check_pages
from api.routers import catalog, customers, operations, orders, pages, suppliers
from client.backorders import connect
from config import tracing
from config.settings import Settings
from domain.policy import load_policy
from domain.requests import PageChoiceBody, PaymentMethodBody, SurveyBody
from store.db import Database, open_store
from store.migrations import StoreSchemaError

log = logging.getLogger("backorders.api")

LINE = {"path.order_id": "$response.body#/order_id", "path.line_id": "$response.body#/line_id"}
SKU_IN_PATH = "$request.path.sku"
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("start_backorder", "201"): {
        "GetLine": {"operationId": "get_backorder", "parameters": LINE},
        "CancelLine": {"operationId": "cancel_backorder", "parameters": LINE},
        "SetEta": {"operationId": "set_eta", "parameters": LINE},
        "AgreeToWait": {"operationId": "agree_to_wait", "parameters": LINE},
        "AcceptOffer": {"operationId": "accept_offer", "parameters": LINE},
        "TakeSubstitute": {"operationId": "take_substitute", "parameters": LINE},
    },
    ("put_sku", "201"): {
        "GetSku": {"operationId": "get_sku", "parameters": {"path.sku": SKU_IN_PATH}},
        "UpdateSku": {"operationId": "put_sku", "parameters": {"path.sku": SKU_IN_PATH}},
        "Availability": {
            "operationId": "get_availability",
            "parameters": {"path.sku": SKU_IN_PATH},
        },
        "StartLine": {"operationId": "start_backorder", "requestBody": {"sku": SKU_IN_PATH}},
        "Receive": {"operationId": "post_receipt", "requestBody": {"sku": SKU_IN_PATH}},
        "PurchaseOrder": {"operationId": "put_purchase_order", "requestBody": {"sku": SKU_IN_PATH}},
        "Subscribe": {"operationId": "subscribe", "requestBody": {"sku": SKU_IN_PATH}},
    },
}
"""OpenAPI links: which operation's answer gives the ids of the next. Stateful fuzzing
(`schema.as_state_machine()`) starts from a catalog entry or a line and follows them, so that
its ETAs, cancels and choices reach real lines, and its starts and receipts real SKUs."""


def operation_id(route: APIRoute) -> str:
    """The handler's name: stable, and what the links above name."""
    return route.name


def create_app(
    settings: Settings, *, temporal: Client | None = None, db: Database | None = None
) -> FastAPI:
    """The API app. Given no Temporal client or store, it opens its own at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_production_ready()
        # Migrated here only where that is safe (`store.db.migrates_itself`); elsewhere a store
        # not at this release's revision stops the start with what to run.
        store = db or open_store(settings)
        try:
            policy = load_policy(settings.policy_file)
            # The customers' pages in every language, rendered once: a broken template of the
            # seller's stops the start, naming its file and line, rather than a customer's page.
            check_pages(settings.templates_dir, policy)
            client = temporal or await connect(settings)
            app.state.settings = settings
            app.state.admission = Admission(
                settings=settings, temporal=client, db=store, policy=policy
            )
            yield
        finally:
            if db is None:
                store.dispose()

    app = FastAPI(
        title="backorders",
        version="1",
        description="Backordered order lines carried from sold to shipped or refunded.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    errors.install(app)
    for router in (orders, suppliers, catalog, customers, pages, operations):
        app.include_router(router.router)
    app.openapi = lambda: openapi_with_links(app)  # type: ignore[method-assign]
    tracing.instrument_app(app, settings)
    return app


BODIES_READ_BY_HAND = (PaymentMethodBody, PageChoiceBody, SurveyBody)


def openapi_with_links(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with `LINKS` added to the answers they start from."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in document["paths"].values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    links = LINKS.get((operation.get("operationId", ""), status))
                    if links:
                        response["links"] = links
        # Bodies read by hand (a form or JSON, `routers.customers.use_link`) still have a schema.
        for model in BODIES_READ_BY_HAND:
            document["components"]["schemas"][model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        app.openapi_schema = document
    return app.openapi_schema


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
