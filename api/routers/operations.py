"""What operations do besides the order system's work: move a line's ETA, read outreach tasks,
metrics and health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import AdmissionDep, IdempotencyKey, IdPath, OpsDep
from api.errors import problems
from domain.metrics import Metrics
from domain.requests import EtaRequest
from domain.responses import EtaAnswer, Health, OutreachTask

router = APIRouter(tags=["operations"])


@router.post(
    "/v1/backorders/{order_id}/{line_id}/eta",
    responses=problems(401, 403, 404, 409, 503, body=True),
)
async def set_eta(
    order_id: IdPath,
    line_id: IdPath,
    body: EtaRequest,
    actor: OpsDep,
    admission: AdmissionDep,
    idempotency_key: IdempotencyKey = None,
) -> EtaAnswer:
    """Tell a waiting line its expected ship date moved (or that none can be given): a date
    with its offset, not before the line's ordered-at."""
    done = await admission.set_eta(actor, order_id, line_id, body, idempotency_key=idempotency_key)
    return done.answer


@router.get("/v1/outreach", responses=problems(401, 403, 503))
async def list_outreach(
    actor: OpsDep,
    admission: AdmissionDep,
    status: Annotated[str | None, Query(pattern="^(open|done)$")] = "open",
) -> list[OutreachTask]:
    """Personal-outreach tasks for customer service, oldest first."""
    return await admission.outreach(status)


@router.get("/v1/metrics", responses=problems(401, 403, 503))
async def get_metrics(actor: OpsDep, admission: AdmissionDep) -> Metrics:
    """Business figures from the store and each channel's marketplace health against its
    thresholds; definitions in the README and docs/observability.md."""
    return await admission.metrics()


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problems(401, 403, 503),
    },
)
async def get_prometheus(
    actor: OpsDep, admission: AdmissionDep, accept: Annotated[str | None, Header()] = None
) -> Response:
    """The same figures, marketplace health included, for a Prometheus scrape (with the ops
    token as its credentials), in OpenMetrics when the scraper asks for it. The Temporal SDK's
    worker metrics are on each worker's own endpoint."""
    body, content_type = await admission.prometheus(accept)
    return Response(body, media_type=content_type)


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "names the part that does not answer"}},
)
async def healthz(admission: AdmissionDep) -> Health | JSONResponse:
    """200 when the store and Temporal both answer; 503 naming the part that does not."""
    health = await admission.health()
    if health.status != "ok":
        return JSONResponse(health.model_dump(), status_code=503)
    return health
