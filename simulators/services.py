"""The four outside services, simulated: carrier, payments, notifications and storefront.

Every POST needs a bearer token and an `Idempotency-Key`; its answer goes through
`Simulator.answer`, which records it once per key and applies the faults in force."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from simulators.faults import DroppedResponse, FaultInjector
from simulators.records import RequestLog


@dataclass
class Simulator:
    """What every simulated service shares: the request log and the faults in force."""

    log: RequestLog
    faults: FaultInjector

    async def answer(
        self,
        service: str,
        path: str,
        key: str,
        body: dict[str, Any],
        make: Callable[[int], dict[str, Any]],
    ) -> Response:
        """The recorded answer for this key (made now if new), through the faults in force."""
        plan = self.faults.draw(service)
        if plan.delay > 0:
            await asyncio.sleep(plan.delay)
        if plan.outcome == "error":
            return JSONResponse(
                {"detail": f"injected fault: {service} failed, nothing was done"},
                status_code=plan.status,
            )
        if plan.outcome == "timeout":
            # The caller gives up first; the effect still happens, late, as with a slow service.
            await asyncio.sleep(plan.hang)
        recorded = await run_in_threadpool(self.log.answer, service, path, key, body, make)
        if plan.outcome == "lost":
            if plan.drop:
                return DroppedResponse()
            return JSONResponse(
                {"detail": f"injected fault: {service} did it, but the answer was lost"},
                status_code=plan.status,
            )
        # A decline is recorded like any answer, and given again for the same key.
        return JSONResponse(
            recorded, status_code=402 if recorded.get("status") == "declined" else 200
        )

    def hold_refusal(self, key: str, body: dict[str, Any]) -> str | None:
        """Why the processor refuses a capture or void on one of its holds: unknown to it
        (a hold made at checkout) passes; a voided or expired hold, or more than it holds
        left, is refused, as a processor would."""
        if self.log.recorded("payments", key):
            return None  # a repeat is answered as the first was
        requests = self.log.list("payments")
        hold = next(
            (
                row
                for row in requests
                if row["path"] == "/authorizations"
                and row["response"].get("authorization_id") == body["authorization_id"]
            ),
            None,
        )
        if hold is None:
            return None
        on_hold = [
            row
            for row in requests
            if row["body"].get("authorization_id") == body["authorization_id"]
        ]
        if any(row["path"] == "/voids" for row in on_hold):
            return f"authorization {body['authorization_id']} was voided"
        if datetime.fromisoformat(hold["response"]["expires_at"]) <= datetime.now(UTC):
            return f"authorization {body['authorization_id']} has expired"
        captured = sum(
            (Decimal(row["body"]["amount"]) for row in on_hold if row["path"] == "/captures"),
            Decimal(0),
        )
        if captured + Decimal(str(body["amount"])) > Decimal(hold["response"]["amount"]):
            return (
                f"capturing {body['amount']} would exceed authorization "
                f"{body['authorization_id']} ({captured} of {hold['response']['amount']} used)"
            )
        return None


def simulator(request: Request) -> Simulator:
    found: Simulator = request.app.state.simulator
    return found


def _key(
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    """The request's idempotency key, once its bearer token is there."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token")
    if not idempotency_key:
        raise HTTPException(400, "missing Idempotency-Key header")
    return idempotency_key


SimulatorDep = Annotated[Simulator, Depends(simulator)]
Key = Annotated[str, Depends(_key)]
JsonBody = Annotated[dict[str, Any], Body()]

router = APIRouter()


def _required(body: dict[str, Any], *fields: str) -> None:
    for field in fields:
        if field not in body:
            raise HTTPException(422, f"{field} is required")


def _money(body: dict[str, Any]) -> dict[str, Any]:
    return {"amount": body["amount"], "currency": body["currency"]}


@router.post("/payments/authorizations", response_model=None)
async def create_authorization(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    """A hold on a payment method; like a processor's test cards, a method whose reference
    contains `decline` is declined (402)."""
    _required(body, "reference", "payment_method", "amount", "currency")
    default_expiry = datetime.now(UTC) + timedelta(days=7)

    def make(seq: int) -> dict[str, Any]:
        if "decline" in str(body["payment_method"]):
            return {"status": "declined", "decline_code": "card_declined"}
        return {
            "authorization_id": f"auth_{seq:08d}",
            "status": "authorized",
            "amount": body["amount"],
            "currency": body["currency"],
            "expires_at": body.get("expires_at") or default_expiry.isoformat(),
        }

    return await sim.answer("payments", "/authorizations", key, body, make)


@router.post("/payments/captures", response_model=None)
async def create_capture(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    _required(body, "reference", "authorization_id", "amount", "currency")
    refusal = await run_in_threadpool(sim.hold_refusal, key, body)
    if refusal is not None:
        raise HTTPException(422, refusal)
    return await sim.answer(
        "payments",
        "/captures",
        key,
        body,
        lambda seq: {"capture_id": f"cap_{seq:08d}", "status": "succeeded", **_money(body)},
    )


async def _money_moved(
    sim: Simulator, body: dict[str, Any], key: str, path: str, made: tuple[str, str, str]
) -> Response:
    """A void or a refund: its id (`made`: field, prefix), status, and the amount it moved."""
    _required(body, "reference", "amount", "currency")
    id_field, prefix, status = made
    return await sim.answer(
        "payments",
        path,
        key,
        body,
        lambda seq: {id_field: f"{prefix}_{seq:08d}", "status": status, **_money(body)},
    )


@router.post("/payments/voids", response_model=None)
async def create_void(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    _required(body, "authorization_id")
    return await _money_moved(sim, body, key, "/voids", ("void_id", "void", "voided"))


@router.post("/payments/refunds", response_model=None)
async def create_refund(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    return await _money_moved(sim, body, key, "/refunds", ("refund_id", "re", "succeeded"))


@router.post("/carrier/shipments", response_model=None)
async def create_shipment(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    _required(body, "reference", "quantity")
    return await sim.answer(
        "carrier",
        "/shipments",
        key,
        body,
        lambda seq: {
            "shipment_id": f"shp_{seq:08d}",
            "tracking_number": f"1ZBO{seq:012d}",
            "service_level": body.get("service_level", "standard"),
            "origin": body.get("origin", "main"),
        },
    )


@router.post("/notifications/messages", response_model=None)
async def send_message(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    _required(body, "to", "subject", "body")
    # Like a real provider refusing an undeliverable address; `.invalid` never resolves.
    if str(body["to"]).endswith(".invalid"):
        raise HTTPException(422, f"cannot deliver to {body['to']}")
    return await sim.answer(
        "notifications",
        "/messages",
        key,
        body,
        lambda seq: {"message_id": f"msg_{seq:08d}", "status": "queued"},
    )


@router.post("/storefront/discount-codes", response_model=None)
async def create_discount_code(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    return await sim.answer(
        "storefront",
        "/discount-codes",
        key,
        body,
        lambda seq: {"code": f"SORRY-{seq:06d}", "percent_off": body.get("percent_off", 10)},
    )


@router.post("/storefront/loyalty-points", response_model=None)
async def award_points(body: JsonBody, key: Key, sim: SimulatorDep) -> Response:
    return await sim.answer(
        "storefront",
        "/loyalty-points",
        key,
        body,
        lambda seq: {"award_id": f"pts_{seq:08d}", "points": body.get("points", 0)},
    )
