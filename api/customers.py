"""What customers reach from their messages: signed links to wait, take an offer, or cancel.

A link names one line, one action (and offer) and expires (`domain.links`). Refusals are written
for the customer and change nothing:

| case | answer |
|---|---|
| tampered or malformed link | 403 "This link is not valid..." |
| link for another line or offer | 403 "This link is for another order line." |
| expired link or offer | 410 |
| unknown offer | 404 |
| offer already accepted, or another one chosen | 409 |
| line already shipped or cancelled | 409 |
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.auth import OptionalActorDep, Role, allow
from client import BackorderClient, CancelRefusedError, ChoiceRefusedError, LineNotFoundError
from config.settings import Settings
from domain import contract
from domain.contract.lines import line_key
from domain.links import LinkAction, LinkClaims, LinkError, verify
from domain.values import IDENTIFIER_PATTERN

router = APIRouter(tags=["customer"])

REFUSAL_STATUS = {
    contract.ERROR_OFFER_UNKNOWN: 404,
    contract.ERROR_OFFER_USED: 409,
    contract.ERROR_OFFER_EXPIRED: 410,
    contract.ERROR_LINE_FINAL: 409,
    contract.ERROR_SUBSTITUTE_REFUSED: 409,
}

_ACTION_TEXT = {
    LinkAction.CANCEL: "cancel this item and get a full refund",
    LinkAction.WAIT: "keep waiting for this item",
    LinkAction.ACCEPT_OFFER: "accept this offer and keep waiting",
    LinkAction.SUBSTITUTE: "take this alternative instead, shipped now",
}


def _claims(request: Request, token: str) -> LinkClaims:
    settings: Settings = request.app.state.settings
    try:
        return verify(settings.signing_key, token)
    except LinkError as exc:
        raise HTTPException(exc.status, exc.reason) from exc


def _line_of(claims: LinkClaims) -> tuple[str, str]:
    _, order_id, line_id = claims.line.split(":", 2)
    return order_id, line_id


async def act(
    request: Request,
    claims: LinkClaims,
    *,
    requested_by: str = "customer",
) -> dict[str, Any]:
    """Carry out what a link (or an authorized caller) asks of one line."""
    backorders: BackorderClient = request.app.state.backorders
    order_id, line_id = _line_of(claims)
    try:
        if claims.action is LinkAction.ACCEPT_OFFER:
            assert claims.offer is not None
            offer = await backorders.accept_offer(order_id, line_id, claims.offer)
            return {"result": "offer_accepted", "offer": offer.model_dump(mode="json")}
        if claims.action is LinkAction.SUBSTITUTE:
            assert claims.offer is not None
            status = await backorders.take_substitute(order_id, line_id, claims.offer)
            return {"result": "substituted", "sku": status.sku, "state": status.state}
        if claims.action is LinkAction.WAIT:
            status = await backorders.agree_to_wait(order_id, line_id)
            return {"result": "waiting", "consent": status.consent, "eta": status.eta}
        cancelled = await backorders.cancel(
            order_id, line_id, reason="the customer cancelled", requested_by=requested_by
        )
        if cancelled is None:
            return {"result": "cancelling", "detail": "accepted; the refund is under way"}
        return {"result": "cancelled", **cancelled.model_dump(mode="json")}
    except ChoiceRefusedError as exc:
        raise HTTPException(REFUSAL_STATUS.get(exc.kind, 409), str(exc)) from exc
    except CancelRefusedError as exc:
        raise HTTPException(409, f"This item cannot be cancelled: {exc}") from exc
    except LineNotFoundError as exc:
        raise HTTPException(404, "We could not find this order line.") from exc


async def act_on_line(
    request: Request,
    actor: Any,
    token: str | None,
    *,
    order_id: str,
    line_id: str,
    action: LinkAction,
    choice: str | None = None,
) -> dict[str, Any]:
    """Act on the line named by the path, with a signed link bound to this line, action and
    choice (offer id or substitute SKU), or with an order-system or ops token."""
    key = line_key(order_id, line_id)
    if token is not None:
        claims = _claims(request, token)
        if claims.line != key or claims.action is not action or claims.offer != choice:
            raise HTTPException(403, "This link is for another order line or offer.")
        return await act(request, claims)
    if actor is None:
        raise HTTPException(401, "a signed link (?token=) or a bearer token is required")
    allow(actor, Role.ORDER_SYSTEM, Role.OPS)
    claims = LinkClaims(line=key, action=action, offer=choice, expires=0)
    return await act(request, claims, requested_by=actor.role.value)


Token = Annotated[str | None, Query(description="the signed link's token")]
IdPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]
"""Ids in a customer's path are checked as everywhere else: they name a workflow."""


@router.post("/v1/backorders/{order_id}/{line_id}/offers/{offer_id}/accept")
async def accept_offer(
    order_id: IdPath,
    line_id: IdPath,
    offer_id: IdPath,
    request: Request,
    actor: OptionalActorDep,
    token: Token = None,
) -> dict[str, Any]:
    """Take a goodwill offer: with the customer's signed link, or an order-system/ops token."""
    return await act_on_line(
        request,
        actor,
        token,
        order_id=order_id,
        line_id=line_id,
        action=LinkAction.ACCEPT_OFFER,
        choice=offer_id,
    )


@router.post("/v1/backorders/{order_id}/{line_id}/substitutes/{sku}/take")
async def take_substitute(
    order_id: IdPath,
    line_id: IdPath,
    sku: IdPath,
    request: Request,
    actor: OptionalActorDep,
    token: Token = None,
) -> dict[str, Any]:
    """Take an in-stock substitute in place of the backordered item."""
    return await act_on_line(
        request,
        actor,
        token,
        order_id=order_id,
        line_id=line_id,
        action=LinkAction.SUBSTITUTE,
        choice=sku,
    )


@router.post("/v1/backorders/{order_id}/{line_id}/wait")
async def agree_to_wait(
    order_id: IdPath,
    line_id: IdPath,
    request: Request,
    actor: OptionalActorDep,
    token: Token = None,
) -> dict[str, Any]:
    """The customer consents to the delay."""
    return await act_on_line(
        request, actor, token, order_id=order_id, line_id=line_id, action=LinkAction.WAIT
    )


@router.get("/v1/links/{token}", response_class=HTMLResponse)
async def show_link(token: str, request: Request) -> HTMLResponse:
    """The page a customer lands on: what the link will do, and a button to do it.

    A GET never acts: mail scanners and link previews open links too."""
    claims = _claims(request, token)
    order_id, line_id = _line_of(claims)
    what = escape(_ACTION_TEXT[claims.action])
    offer = f" (offer {escape(claims.offer)})" if claims.offer else ""
    page = (
        f"<!doctype html><title>Your order {escape(order_id)}</title>"
        f"<h1>Order {escape(order_id)}, line {escape(line_id)}</h1>"
        f"<p>Do you want to {what}{offer}?</p>"
        f'<form method="post"><button type="submit">Yes, {what}</button></form>'
    )
    return HTMLResponse(page)


@router.post("/v1/links/{token}")
async def use_link(token: str, request: Request) -> dict[str, Any]:
    """Do what the signed link says, once; refusals say why, in the customer's words."""
    return await act(request, _claims(request, token))
