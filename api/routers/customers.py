"""What customers reach from their messages: signed links to wait, take an offer or a substitute,
or cancel (`.../cancel?token=` is served by `orders`, beside the order system's cancel).

A link names one line, one action (and offer or substitute) and expires (`domain.links`); it
carries no more power than that. The order system and ops may do the same for a customer with
their tokens. Refusals are written for the customer and change nothing:

| case | answer |
|---|---|
| tampered or malformed link | 403 "This link is not valid..." |
| link for another line, action or offer | 403 "This link is for another order line." |
| expired link or offer | 410 |
| unknown offer | 404 |
| offer already accepted, or another one chosen | 409 |
| line already shipped or cancelled | 409 |
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from api import auth
from api.deps import AdmissionDep, CallerDep, IdPath, LinkToken, SettingsDep
from api.errors import problems
from domain.contract.lines import line_key
from domain.links import PAGE_ACTIONS, LinkAction, LinkClaims
from domain.responses import ChoiceAnswer, PaymentUpdated

router = APIRouter(tags=["customer"])

_ACTION_TEXT = {
    LinkAction.CANCEL: "cancel this item and get a full refund",
    LinkAction.WAIT: "keep waiting for this item",
    LinkAction.ACCEPT_OFFER: "accept this offer and keep waiting",
    LinkAction.SUBSTITUTE: "take this alternative instead, shipped now",
    LinkAction.UPDATE_PAYMENT: "give another payment method for this item",
}
REFUSALS = problems(401, 403, 404, 409, 410, 503)


def _line_of(claims: LinkClaims) -> tuple[str, str]:
    if claims.action in PAGE_ACTIONS:
        raise HTTPException(403, f"This link is for a page: /v1/{claims.action.value}/...")
    _, order_id, line_id = claims.line.split(":", 2)
    return order_id, line_id


async def _act(
    caller: CallerDep,
    admission: AdmissionDep,
    order_id: str,
    line_id: str,
    action: LinkAction,
    choice: str | None = None,
) -> ChoiceAnswer:
    """Act on the path's line: with a link bound to this line, action and choice (offer id or
    substitute SKU), or with an order-system or ops token."""
    claims = caller.claims
    if claims is not None and (
        claims.line != line_key(order_id, line_id)
        or claims.action is not action
        or claims.offer != choice
    ):
        raise HTTPException(403, "This link is for another order line or offer.")
    return await admission.choose(caller.actor, order_id, line_id, action, choice)


@router.post(
    "/v1/backorders/{order_id}/{line_id}/offers/{offer_id}/accept",
    response_model=ChoiceAnswer,
    responses=REFUSALS,
)
async def accept_offer(
    order_id: IdPath, line_id: IdPath, offer_id: IdPath, caller: CallerDep, admission: AdmissionDep
) -> ChoiceAnswer:
    """Take a goodwill offer: with the customer's signed link, or an order-system/ops token."""
    return await _act(caller, admission, order_id, line_id, LinkAction.ACCEPT_OFFER, offer_id)


@router.post(
    "/v1/backorders/{order_id}/{line_id}/substitutes/{sku}/take",
    response_model=ChoiceAnswer,
    responses=REFUSALS,
)
async def take_substitute(
    order_id: IdPath, line_id: IdPath, sku: IdPath, caller: CallerDep, admission: AdmissionDep
) -> ChoiceAnswer:
    """Take an in-stock substitute in place of the backordered item."""
    return await _act(caller, admission, order_id, line_id, LinkAction.SUBSTITUTE, sku)


@router.post(
    "/v1/backorders/{order_id}/{line_id}/wait", response_model=ChoiceAnswer, responses=REFUSALS
)
async def agree_to_wait(
    order_id: IdPath, line_id: IdPath, caller: CallerDep, admission: AdmissionDep
) -> ChoiceAnswer:
    """The customer consents to the delay."""
    return await _act(caller, admission, order_id, line_id, LinkAction.WAIT)


@router.get(
    "/v1/links/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **problems(403, 410),
    },
)
async def show_link(token: LinkToken, settings: SettingsDep) -> HTMLResponse:
    """The page a customer lands on: what the link will do, and a button to do it.

    A GET never acts: mail scanners and link previews open links too."""
    claims = auth.claims_of(settings, token)
    order_id, line_id = _line_of(claims)
    what = escape(_ACTION_TEXT[claims.action])
    offer = f" (offer {escape(claims.offer)})" if claims.offer else ""
    # The storefront collects the card and hands its reference to this form.
    field = (
        '<label for="reference">Payment method reference</label>'
        '<input id="reference" name="reference" required maxlength="120">'
        if claims.action is LinkAction.UPDATE_PAYMENT
        else ""
    )
    page = (
        f"<!doctype html><title>Your order {escape(order_id)}</title>"
        f"<h1>Order {escape(order_id)}, line {escape(line_id)}</h1>"
        f"<p>Do you want to {what}{offer}?</p>"
        f'<form method="post">{field}<button type="submit">Yes, {what}</button></form>'
    )
    return HTMLResponse(page)


@router.post(
    "/v1/links/{token}",
    response_model=ChoiceAnswer,
    responses={
        **REFUSALS,
        **problems(402),
        422: {
            "description": "the new payment method's reference is refused, named",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        },
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                media: {"schema": {"$ref": "#/components/schemas/PaymentMethodBody"}}
                for media in ("application/json", "application/x-www-form-urlencoded")
            },
        }
    },
)
async def use_link(
    token: LinkToken, settings: SettingsDep, admission: AdmissionDep, request: Request
) -> ChoiceAnswer:
    """Do what the signed link says, once; refusals say why, in the customer's words. An
    update-payment link takes the new method's `reference` (a form, or JSON)."""
    claims = auth.claims_of(settings, token)
    order_id, line_id = _line_of(claims)
    customer = auth.customer(claims)
    if claims.action is LinkAction.UPDATE_PAYMENT:
        view = await admission.update_payment(
            customer, order_id, line_id, await _payment_method(request)
        )
        return PaymentUpdated(payment=view)
    return await admission.choose(customer, order_id, line_id, claims.action, claims.offer)


async def _payment_method(request: Request) -> dict[str, Any]:
    """The new method's fields, from a plain HTML form (no JavaScript needed) or JSON."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        body = await request.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {"reference": body}
