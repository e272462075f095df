"""The dependencies of the routers, as `Annotated` aliases: the service layer, who asks, and
the validated parts of a request every router shares (ids, the Idempotency-Key header).

Each is `async` though none awaits: FastAPI runs a plain `def` dependency in its thread pool,
one hop per dependency per request, for work that never blocks (a token compared, an
attribute read). On a start that was four hops and their GIL hand-overs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from admission import IDEMPOTENCY_KEY_PATTERN, Admission
from admission.actors import Actor, Role
from api import auth
from config.settings import Settings
from domain.links import LinkClaims
from domain.values import IDENTIFIER_PATTERN

LINK_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{1,128}$"  # noqa: S105 - a shape
"""A signed link's token: base64url claims, a dot, a base64url HMAC (`domain.links`)."""

IdPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, max_length=64)]
IdQuery = Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN, max_length=64)]
LinkToken = Annotated[str, Path(pattern=LINK_TOKEN_PATTERN, description="a signed link")]
LinkQuery = Annotated[
    str | None,
    Query(pattern=LINK_TOKEN_PATTERN, description="a customer's signed link, instead of a token"),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Apply this request once: the same key and body again is answered as the "
        "first was; the same key with another body is refused (422). Scoped to the caller, the "
        "method and the path; kept 24 hours.",
    ),
]
IdempotentByIds = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Accepted and not needed: this request is idempotent by its own ids.",
    ),
]


async def settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


async def admission(request: Request) -> Admission:
    found: Admission = request.app.state.admission
    return found


SettingsDep = Annotated[Settings, Depends(settings)]
AdmissionDep = Annotated[Admission, Depends(admission)]


async def bearer(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    return auth.identify(settings, authorization)


ActorDep = Annotated[Actor, Depends(bearer)]
"""Anyone with a known token."""


async def order_system(actor: ActorDep) -> Actor:
    return auth.allow(actor, Role.ORDER_SYSTEM, Role.OPS)


async def ops(actor: ActorDep) -> Actor:
    return auth.allow(actor, Role.OPS)


async def supplier(supplier_id: IdPath, actor: ActorDep) -> Actor:
    return auth.allow_supplier(actor, supplier_id)


OrderSystemDep = Annotated[Actor, Depends(order_system)]
"""The order system or operations (which may do anything the order system does)."""
CatalogDep = OrderSystemDep
OpsDep = Annotated[Actor, Depends(ops)]
SupplierDep = Annotated[Actor, Depends(supplier)]
"""The supplier of the path's `supplier_id`, or operations."""


class Caller:
    """A customer with a signed link (`?token=`), or the order system or ops with a token."""

    def __init__(self, actor: Actor, claims: LinkClaims | None = None) -> None:
        self.actor = actor
        self.claims = claims


async def link_or_bearer(
    settings: SettingsDep,
    token: LinkQuery = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    if token is not None:
        claims = auth.claims_of(settings, token)
        return Caller(auth.customer(claims), claims)
    if authorization is None:
        raise auth.unauthorized("a signed link (?token=) or a bearer token is required")
    return Caller(auth.allow(auth.identify(settings, authorization), Role.ORDER_SYSTEM, Role.OPS))


CallerDep = Annotated[Caller, Depends(link_or_bearer)]
