"""Signed links for customers: each names one line, one action (and offer), and expires.

    token = base64url(claims JSON) "." base64url(HMAC-SHA256(key, claims JSON))

The link is all the customer needs (no account, no password), so it carries no more power than
its one action on its one line, and stops working when it expires. Only activities and the API
sign and verify: the key never enters a workflow history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ValidationError


class LinkAction(StrEnum):
    CANCEL = "cancel"
    WAIT = "wait"
    ACCEPT_OFFER = "accept_offer"
    SUBSTITUTE = "substitute"
    """`offer` holds the substitute's SKU."""
    UPDATE_PAYMENT = "update_payment"
    """Give another payment method after a declined renewal of the hold."""
    STATUS = "status"
    """The line's status page (`/v1/status/{token}`): what the line is doing, and the choices
    open now (wait, an open offer, an in-stock substitute, cancel), each acted on from there."""
    SURVEY = "survey"
    """The survey page (`/v1/survey/{token}`): one score and comment, once per line."""


PAGE_ACTIONS = frozenset({LinkAction.STATUS, LinkAction.SURVEY})
"""Links to a page rather than to one choice: `/v1/links/{token}` refuses them."""

PAGE_LINK_LIFETIME = timedelta(days=400)
"""How long a status or survey link works, counted from the line's order time (real days, not
policy days: a customer may look at an old order), so every message of a line carries the same
link."""


class LinkClaims(BaseModel):
    line: str
    """The line's key, `backorder:{order_id}:{line_id}`."""
    action: LinkAction
    offer: str | None = None
    expires: int
    """Unix seconds."""


class LinkError(Exception):
    """Why a link is refused, in words a customer can read; `status` is the HTTP answer."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


INVALID = "This link is not valid. Please use the link from your email."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, body: bytes) -> bytes:
    return hmac.new(key.encode(), body, hashlib.sha256).digest()


def sign(key: str, claims: LinkClaims) -> str:
    body = json.dumps(claims.model_dump(mode="json"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_mac(key, body))}"


def page_claims(line: str, action: LinkAction, ordered_at: datetime) -> LinkClaims:
    """The claims of a line's status or survey link: the same for every message of the line."""
    return LinkClaims(
        line=line, action=action, expires=int((ordered_at + PAGE_LINK_LIFETIME).timestamp())
    )


def verify(key: str, token: str, now: datetime | None = None) -> LinkClaims:
    """The link's claims, or LinkError: tampered or malformed (403), expired (410)."""
    try:
        body_part, mac_part = token.split(".")
        body = _unb64(body_part)
        presented = _unb64(mac_part)
    except ValueError as exc:
        raise LinkError(INVALID, 403) from exc
    if not hmac.compare_digest(presented, _mac(key, body)):
        raise LinkError(INVALID, 403)
    try:
        claims = LinkClaims.model_validate_json(body)
    except ValidationError as exc:
        raise LinkError(INVALID, 403) from exc
    if (now or datetime.now(UTC)).timestamp() >= claims.expires:  # determinism: edge only
        raise LinkError("This link has expired. Please contact us and we will help.", 410)
    return claims
