"""What a supplier (or the receiving dock) does: report arrivals and purchase orders. A supplier
acts on its own resources only; operations may act for any."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdmissionDep, IdempotencyKey, IdempotentByIds, IdPath, SupplierDep
from api.errors import problems
from domain.requests import PurchaseOrderRequest, ReceiptRequest
from domain.responses import PurchaseOrderAnswer, ReceiptAnswer, SupplierPerformance

router = APIRouter(tags=["supplier"])


@router.post(
    "/v1/suppliers/{supplier_id}/receipts",
    status_code=201,
    responses={
        200: {"model": ReceiptAnswer, "description": "this receipt was reported already"},
        **problems(401, 403, 409, 503, body=True),
    },
)
async def post_receipt(
    supplier_id: IdPath,
    body: ReceiptRequest,
    response: Response,
    actor: SupplierDep,
    admission: AdmissionDep,
    idempotency_key: IdempotentByIds = None,
) -> ReceiptAnswer:
    """Stock arrived: allocated to waiting lines in queue order. Idempotent by receipt id."""
    done = await admission.receive(actor, supplier_id, body)
    response.status_code = done.status
    return done.answer


@router.put(
    "/v1/suppliers/{supplier_id}/purchase-orders/{po_id}",
    responses={
        201: {"model": PurchaseOrderAnswer, "description": "a new purchase order"},
        **problems(401, 403, 409, 503, body=True),
    },
)
async def put_purchase_order(
    supplier_id: IdPath,
    po_id: IdPath,
    body: PurchaseOrderRequest,
    response: Response,
    actor: SupplierDep,
    admission: AdmissionDep,
    idempotency_key: IdempotencyKey = None,
) -> PurchaseOrderAnswer:
    """A PO, or its new date or quantity: the ETAs of the lines waiting for it follow."""
    done = await admission.put_purchase_order(
        actor, supplier_id, po_id, body, idempotency_key=idempotency_key
    )
    response.status_code = done.status
    return done.answer


@router.get("/v1/suppliers/{supplier_id}/performance", responses=problems(401, 403, 503))
async def get_performance(
    supplier_id: IdPath, actor: SupplierDep, admission: AdmissionDep
) -> SupplierPerformance:
    """The supplier's record against its purchase orders: on-time rate, lateness p50 and p90,
    fill rate, and what ETAs built on its POs add (that supplier and operations)."""
    return await admission.supplier_performance(supplier_id)
