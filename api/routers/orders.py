"""What the order system does: start a line, read lines, cancel a line."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response

from api.deps import AdmissionDep, CallerDep, IdempotentByIds, IdPath, OrderSystemDep
from api.errors import problems
from domain.contract.lines import line_key
from domain.line.status import LineStatus
from domain.links import LinkAction
from domain.requests import BackorderRequest, CancelBody, LineQuery, SalesDayRequest
from domain.responses import CancelAnswer, SalesDayAnswer, StartAnswer
from domain.values import Channel

router = APIRouter(tags=["order system"])


@router.post(
    "/v1/backorders",
    status_code=201,
    responses={
        200: {"model": StartAnswer, "description": "the same request again: nothing new"},
        **problems(401, 403, 409, 503, body=True),
    },
)
async def start_backorder(
    body: BackorderRequest,
    response: Response,
    actor: OrderSystemDep,
    admission: AdmissionDep,
    idempotency_key: IdempotentByIds = None,
) -> StartAnswer:
    """Start the workflow of one backordered line: 201 new, 200 the same body again, 409 the
    same ids with another body, 422 invalid (an unknown SKU too)."""
    done = await admission.start(actor, body)
    response.status_code = done.status
    return done.answer


@router.get("/v1/backorders/{order_id}/{line_id}", responses=problems(401, 403, 404, 503))
async def get_backorder(
    order_id: IdPath, line_id: IdPath, actor: OrderSystemDep, admission: AdmissionDep
) -> LineStatus:
    """The line: state, quantities, ship-by, ETA, the next deadline and what happens then,
    escalation level, consent, offers, messages, shipments, refunds."""
    return await admission.line(order_id, line_id)


@router.get("/v1/backorders", responses=problems(401, 403, 503))
async def list_backorders(
    query: Annotated[LineQuery, Query()], actor: OrderSystemDep, admission: AdmissionDep
) -> list[LineStatus]:
    """Lines from the store, newest first, filtered by every parameter given."""
    return await admission.lines(query)


@router.post(
    "/v1/backorders/{order_id}/{line_id}/cancel",
    responses={
        202: {"model": CancelAnswer, "description": "accepted; the refund is under way"},
        **problems(401, 403, 404, 409, 410, 503, body=True),
    },
)
async def cancel_backorder(
    order_id: IdPath,
    line_id: IdPath,
    caller: CallerDep,
    response: Response,
    admission: AdmissionDep,
    body: Annotated[CancelBody | None, Body()] = None,
    idempotency_key: IdempotentByIds = None,
) -> CancelAnswer:
    """Cancel what has not shipped; held stock goes to the next lines; refund in full. The
    order system and ops use their tokens; a customer uses the signed cancel link. Who
    cancelled is recorded from the credential."""
    if caller.claims is not None and (
        caller.claims.line != line_key(order_id, line_id)
        or caller.claims.action is not LinkAction.CANCEL
    ):
        raise HTTPException(403, "This link is for another order line or offer.")
    done = await admission.cancel(caller.actor, order_id, line_id, body)
    response.status_code = done.status
    return done.answer


@router.put(
    "/v1/sales/{channel}/{day}",
    status_code=201,
    responses={
        200: {"model": SalesDayAnswer, "description": "the day's count replaced"},
        **problems(401, 403, 503, body=True),
    },
)
async def put_sales_day(
    channel: Annotated[Channel, Path()],
    day: Annotated[date, Path(description="a UTC day, not after today")],
    body: SalesDayRequest,
    response: Response,
    actor: OrderSystemDep,
    admission: AdmissionDep,
) -> SalesDayAnswer:
    """The order lines sold on a channel on a day, backordered or not: the backorder rate's
    denominator in /v1/metrics. A level: 201 a new day, 200 its count replaced."""
    done = await admission.set_sales_day(actor, channel.value, day.isoformat(), body)
    response.status_code = done.status
    return done.answer
