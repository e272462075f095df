"""Money at the payment processor: holds, captures of what shipped, voids of what never will.

Each call carries an idempotency key of the line and the step (`backorder:o1:1:capture:2` for
the capture of the second shipment, `...:authorization:3` for the third hold, `...:void:1` for
the release of the first), and is recorded in the store under the same key, so a retried
activity, a restarted worker or a replayed workflow never moves money twice. A declined
authorization is an answer (the processor's 402), recorded and returned, not an error.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from activities.services import OutsideServices
from domain.contract.lines import AUTHORIZE, CAPTURE, VOID
from domain.line.payment import (
    Authorization,
    AuthorizeInput,
    CaptureInput,
    CaptureResult,
    VoidInput,
    VoidResult,
)
from store import records
from store.tables import PaymentRow

DECLINED = 402


def authorization_key(line_key: str, number: int) -> str:
    return f"{line_key}:authorization:{number}"


def capture_key(line_key: str, shipment: int) -> str:
    return f"{line_key}:capture:{shipment}"


def void_key(line_key: str, number: int) -> str:
    return f"{line_key}:void:{number}"


class PaymentActivities:
    def __init__(self, services: OutsideServices) -> None:
        self.services = services
        self.db = services.db

    async def _recorded(self, key: str) -> PaymentRow | None:
        return await asyncio.to_thread(records.find_payment, self.db, key)

    async def _record(self, row: PaymentRow) -> PaymentRow:
        return await asyncio.to_thread(records.record_payment, self.db, row)

    @AUTHORIZE.defn
    async def authorize(self, request: AuthorizeInput) -> Authorization:
        key = authorization_key(request.line_key, request.number)
        row = await self._recorded(key)
        if row is None:
            status, answer = await self.services.post(
                "payments",
                "/authorizations",
                idempotency_key=key,
                body={
                    "reference": request.line_key,
                    "payment_method": request.method,
                    "amount": request.amount,
                    "currency": request.currency,
                    "expires_at": request.expires_at.isoformat(),
                    "merchant_initiated": request.merchant_initiated,
                },
                answers=frozenset({DECLINED}),
            )
            declined = status == DECLINED
            row = await self._record(
                PaymentRow(
                    idempotency_key=key,
                    line_key=request.line_key,
                    kind="authorization",
                    outcome="declined" if declined else "succeeded",
                    amount=request.amount,
                    currency=request.currency,
                    hold="" if declined else str(answer["authorization_id"]),
                    processor_id=str(answer.get("authorization_id") or answer.get("decline_code")),
                    expires_at=None if declined else datetime.fromisoformat(answer["expires_at"]),
                )
            )
        if row.outcome == "declined":
            return Authorization(
                reference="",
                expires_at=request.expires_at,
                declined=True,
                reason=row.processor_id,
            )
        assert row.expires_at is not None
        return Authorization(reference=row.hold, expires_at=row.expires_at)

    @CAPTURE.defn
    async def capture(self, request: CaptureInput) -> CaptureResult:
        key = capture_key(request.line_key, request.shipment)
        row = await self._recorded(key)
        if row is None:
            _, answer = await self.services.post(
                "payments",
                "/captures",
                idempotency_key=key,
                body={
                    "reference": request.line_key,
                    "authorization_id": request.hold,
                    "amount": request.amount,
                    "currency": request.currency,
                },
            )
            row = await self._record(
                PaymentRow(
                    idempotency_key=key,
                    line_key=request.line_key,
                    kind="capture",
                    outcome="succeeded",
                    amount=request.amount,
                    currency=request.currency,
                    hold=request.hold,
                    processor_id=str(answer["capture_id"]),
                )
            )
        return CaptureResult(capture_id=row.processor_id, amount=row.amount)

    @VOID.defn
    async def void(self, request: VoidInput) -> VoidResult:
        key = void_key(request.line_key, request.number)
        row = await self._recorded(key)
        if row is None:
            _, answer = await self.services.post(
                "payments",
                "/voids",
                idempotency_key=key,
                body={
                    "reference": request.line_key,
                    "authorization_id": request.hold,
                    "amount": request.amount,
                    "currency": request.currency,
                    "reason": request.reason,
                },
            )
            row = await self._record(
                PaymentRow(
                    idempotency_key=key,
                    line_key=request.line_key,
                    kind="renewal_void" if request.replaced else "void",
                    outcome="succeeded",
                    amount=request.amount,
                    currency=request.currency,
                    hold=request.hold,
                    processor_id=str(answer["void_id"]),
                )
            )
        return VoidResult(void_id=row.processor_id)
