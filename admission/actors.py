"""Who asks: the caller's role, established from its credential (a bearer token, a customer's
signed link, or the Python client's own settings). Who did what is recorded from here, never
from a request's body."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ORDER_SYSTEM = "order_system"
    OPS = "ops"
    SUPPLIER = "supplier"
    CUSTOMER = "customer"
    """Through a signed link, which names one line."""


@dataclass(frozen=True)
class Actor:
    role: Role
    supplier_id: str | None = None
    """The supplier a supplier's token belongs to."""
    line: str | None = None
    """The line key a customer's link names."""

    @property
    def identity(self) -> str:
        """Who this is, as far as the credential tells: `ops`, `supplier:acme`,
        `customer:backorder:991:1`. Scopes Idempotency-Keys."""
        if self.role is Role.SUPPLIER:
            return f"supplier:{self.supplier_id}"
        if self.role is Role.CUSTOMER:
            return f"customer:{self.line}"
        return self.role.value


ORDER_SYSTEM = Actor(Role.ORDER_SYSTEM)
OPS = Actor(Role.OPS)
