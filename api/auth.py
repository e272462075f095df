"""Bearer tokens per actor: the order system, operations, and each supplier; and the customers'
signed links.

401 means "we do not know who you are" (no token, or an unknown one); 403 means "we know, and
this is not yours". Tokens are compared in constant time, every one of them, so the time taken
does not tell which token came close.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException

from admission.actors import Actor, Role
from config.settings import Settings
from domain.links import LinkClaims, LinkError, verify


def _tokens(settings: Settings) -> list[tuple[str, Actor]]:
    tokens = [
        (settings.order_system_token, Actor(Role.ORDER_SYSTEM)),
        (settings.ops_token, Actor(Role.OPS)),
    ]
    tokens += [
        (token, Actor(Role.SUPPLIER, supplier_id))
        for supplier_id, token in settings.supplier_token_map.items()
    ]
    return tokens


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def identify(settings: Settings, authorization: str | None) -> Actor:
    """The actor a bearer token belongs to; 401 for none or an unknown one."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise unauthorized("a bearer token is required")
    found: Actor | None = None
    for token, actor in _tokens(settings):
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = actor
    if found is None:
        raise unauthorized("unknown token")
    return found


def allow(actor: Actor, *roles: Role) -> Actor:
    if actor.role not in roles:
        raise HTTPException(403, f"the {actor.role.value} token may not do this")
    return actor


def allow_supplier(actor: Actor, supplier_id: str) -> Actor:
    """Operations may act for any supplier; a supplier only for itself."""
    if actor.role is Role.OPS:
        return actor
    if actor.role is not Role.SUPPLIER or actor.supplier_id != supplier_id:
        raise HTTPException(403, f"this token may not act for supplier {supplier_id!r}")
    return actor


def claims_of(settings: Settings, token: str) -> LinkClaims:
    """A signed link's claims; 403 for a tampered or malformed link, 410 for an expired one."""
    try:
        return verify(settings.signing_key, token)
    except LinkError as exc:
        raise HTTPException(exc.status, exc.reason) from exc


def customer(claims: LinkClaims) -> Actor:
    """The customer a link speaks for: the one of the line it names."""
    return Actor(Role.CUSTOMER, line=claims.line)
