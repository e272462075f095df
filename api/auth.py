"""Bearer tokens per actor: the order system, operations, and each supplier.

401 means "we do not know who you are" (no token, or an unknown one); 403 means "we know, and
this is not yours". Tokens are compared in constant time, every one of them, so the time taken
does not tell which token came close.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from config.settings import Settings


class Role(StrEnum):
    ORDER_SYSTEM = "order_system"
    OPS = "ops"
    SUPPLIER = "supplier"


@dataclass(frozen=True)
class Actor:
    role: Role
    supplier_id: str | None = None


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


def identify(settings: Settings, authorization: str | None) -> Actor:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise HTTPException(
            401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    found: Actor | None = None
    for token, actor in _tokens(settings):
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = actor
    if found is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return found


def current_actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> Actor:
    settings: Settings = request.app.state.settings
    return identify(settings, authorization)


ActorDep = Annotated[Actor, Depends(current_actor)]


def optional_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor | None:
    """For paths a customer reaches with a signed link instead of a token."""
    return None if authorization is None else current_actor(request, authorization)


OptionalActorDep = Annotated[Actor | None, Depends(optional_actor)]


def allow(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise HTTPException(403, f"the {actor.role.value} token may not do this")


def allow_supplier(actor: Actor, supplier_id: str) -> None:
    """Operations may act for any supplier; a supplier only for itself."""
    if actor.role is Role.OPS:
        return
    if actor.role is not Role.SUPPLIER or actor.supplier_id != supplier_id:
        raise HTTPException(403, f"this token may not act for supplier {supplier_id!r}")
