"""The catalog and the storefront: SKUs and their stock counts, the availability label of a
product page, back-in-stock alerts."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdmissionDep, CatalogDep, IdempotencyKey, IdPath, OrderSystemDep
from api.errors import problems
from domain.requests import SkuRequest, SubscriptionRequest
from domain.responses import SkuAnswer, SkuView, SubscriptionAnswer
from domain.stock import Availability

router = APIRouter()


@router.put(
    "/v1/skus/{sku}",
    tags=["catalog"],
    responses={
        201: {"model": SkuAnswer, "description": "a new catalog entry"},
        **problems(401, 403, 409, 503, body=True),
    },
)
async def put_sku(
    sku: IdPath,
    body: SkuRequest,
    response: Response,
    actor: CatalogDep,
    admission: AdmissionDep,
    idempotency_key: IdempotencyKey = None,
) -> SkuAnswer:
    """Create or update a catalog entry. `free_stock` is a stock count, set every time it is
    sent (waiting lines get the units at once), unless the Idempotency-Key repeats."""
    done = await admission.put_sku(actor, sku, body, idempotency_key=idempotency_key)
    response.status_code = done.status
    return done.answer


@router.get("/v1/skus/{sku}", tags=["catalog"], responses=problems(401, 403, 404, 503))
async def get_sku(sku: IdPath, actor: CatalogDep, admission: AdmissionDep) -> SkuView:
    """The catalog entry and its free stock."""
    return await admission.sku(sku)


@router.get("/v1/availability/{sku}", tags=["storefront"], responses=problems(404, 503))
async def get_availability(sku: IdPath, admission: AdmissionDep) -> Availability:
    """The label a product page shows, and the facts behind it. Public, like the page."""
    return await admission.availability(sku)


@router.post(
    "/v1/subscriptions",
    status_code=201,
    tags=["storefront"],
    responses=problems(401, 403, 409, 503, body=True),
)
async def subscribe(
    body: SubscriptionRequest,
    actor: OrderSystemDep,
    admission: AdmissionDep,
    idempotency_key: IdempotencyKey = None,
) -> SubscriptionAnswer:
    """Back-in-stock alert: one message the next time the SKU has stock for new orders."""
    done = await admission.subscribe(actor, body, idempotency_key=idempotency_key)
    return done.answer


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    tags=["storefront"],
    responses=problems(401, 403, 404, 503),
)
async def unsubscribe(
    subscription_id: IdPath, actor: OrderSystemDep, admission: AdmissionDep
) -> SubscriptionAnswer:
    return await admission.unsubscribe(subscription_id)
