"""Errors to HTTP answers, in one place: the service layer's typed errors (`admission.errors`),
and what Temporal or the store raise when they do not answer.

| error | status |
|---|---|
| InvalidRequest | 422, `{"detail": [{"loc", "msg", "type"}]}` as FastAPI's own validation |
| NotFound | 404 |
| Conflict | 409 |
| Refused | 409; 404 for an unknown offer, 410 for an expired one |
| Unavailable, Temporal or the store down | 503 with Retry-After: asking again is safe |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from temporalio.service import RPCError

from admission.errors import Conflict, InvalidRequest, NotFound, Refused, Unavailable
from admission.workflows import UNAVAILABLE_STATUSES
from domain import contract
from domain.responses import Problem

log = logging.getLogger("backorders.api")

RETRY_AFTER_SECONDS = 5

REFUSAL_STATUS = {
    contract.ERROR_OFFER_UNKNOWN: 404,
    contract.ERROR_OFFER_EXPIRED: 410,
    contract.ERROR_PAYMENT_DECLINED: 402,
}
"""A line's refusals that are not 409: an offer it never made, one past its date, a payment
method the processor declined."""

_DESCRIPTIONS = {
    400: "the body could not be read",
    401: "no bearer token, or an unknown one",
    403: "a known token (or link) outside its scope; a tampered link",
    402: "the payment method was declined by the payment processor",
    404: "no such line, SKU, offer or subscription",
    409: "the ids are taken by another request, or the line's state refuses it",
    410: "the link or the offer has expired",
    503: "Temporal or the store did not answer, or the line not in time; asking again is safe",
}


def problems(*statuses: int, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation may give, for its OpenAPI document (with `body`, also
    400 for a body that is not JSON). Always JSON, whatever the operation's own answer is."""
    json = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS[status], "content": json}
        for status in ((400, *statuses) if body else statuses)
    }


def unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": message}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    return JSONResponse({"detail": [error.as_json() for error in exc.errors]}, status_code=422)


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse(
        {"detail": exc.message, "kind": exc.kind}, status_code=REFUSAL_STATUS.get(exc.kind, 409)
    )


async def part_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)
    return unavailable(exc.message)


async def temporal_error(request: Request, exc: Exception) -> JSONResponse:
    """An RPC error the service layer did not expect: Temporal not answering is a 503 the
    caller may retry; any other is a bug and stays a 500."""
    assert isinstance(exc, RPCError)
    if exc.status in UNAVAILABLE_STATUSES:
        return unavailable("Temporal is unavailable; asking again is safe")
    log.error("Temporal refused %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


async def store_error(request: Request, exc: Exception) -> JSONResponse:
    """The store did not answer: 503, nothing written (the transaction did not commit)."""
    assert isinstance(exc, OperationalError)
    log.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc.orig)
    return unavailable("the store is unavailable; asking again is safe")


def install(app: FastAPI) -> None:
    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(Unavailable, part_unavailable)
    app.add_exception_handler(RPCError, temporal_error)
    app.add_exception_handler(OperationalError, store_error)
