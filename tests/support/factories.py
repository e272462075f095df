"""Request bodies, ids, tokens and policies: tests change only what their rule is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

ORDER_TOKEN = "test-order-token"
OPS_TOKEN = "test-ops-token"
SUPPLIER_TOKENS = {"acme": "test-acme-token", "globex": "test-globex-token"}


def new_id(prefix: str = "o") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def backorder(
    order_id: str,
    sku: str,
    quantity: int = 1,
    *,
    line_id: str = "1",
    ship_policy: str = "partial",
    ordered_at: datetime | None = None,
    ship_by: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid backorder request body."""
    body: dict[str, Any] = {
        "order_id": order_id,
        "line_id": line_id,
        "sku": sku,
        "quantity": quantity,
        "unit_price": "19.99",
        "currency": "USD",
        "channel": "web",
        "customer": {"id": f"c-{order_id}", "email": f"{order_id}@example.com", "tier": "standard"},
        "ordered_at": (ordered_at or datetime.now(UTC)).isoformat(),
        "ship_policy": ship_policy,
    }
    if ship_by is not None:
        body["ship_by"] = ship_by.isoformat()
    body.update(overrides)
    return body


def payment_terms(order_id: str, n: int, unit_price: str, quantity: int) -> dict[str, Any]:
    """Money for the n-th line of a surge: a third authorized only, a third with a deposit of
    about half, a third paid in full at order with no terms (`{}`: add nothing)."""
    if n % 3 == 0:
        return {"payment": {"reference": f"card_{order_id}", "captured_amount": "0"}}
    if n % 3 == 1:
        deposit = (Decimal(unit_price) * quantity / 2).quantize(Decimal("0.01"))
        return {"payment": {"reference": f"card_{order_id}", "captured_amount": str(deposit)}}
    return {}


def receipt(sku: str, quantity: int, receipt_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"receipt_id": receipt_id or new_id("r"), "sku": sku, "quantity": quantity, **extra}


FAST_POLICY: dict[str, Any] = {
    "day_seconds": 1,
    # Lines that ship here are not surveyed 7 s later: tests count every message a line gets.
    "survey_after_days": None,
    "delay": {"notice_lead_days": 2, "silent_consent_days": 30},
    "offer_valid_days": 4,
    "channels": {
        "web": {
            "handling_days": 3,
            "quiet_days": 1,
            "ladder": [
                {
                    "name": "apology",
                    "offset_days": -1,
                    "rules": [
                        {
                            "tiers": ["vip"],
                            "offers": [
                                {"kind": "free_expedited_shipping"},
                                {"kind": "discount_code", "percent": 20},
                            ],
                            "outreach": True,
                        },
                        {"offers": [{"kind": "discount_code", "percent": 10}]},
                    ],
                }
            ],
        },
        "amazon": {
            "handling_days": 2,
            "auto_cancel": {"business_days": 7},
            "choice_lead_days": 2,
            "quiet_days": 1,
            "ladder": [],
        },
    },
}
"""Policies in seconds: ship-by is a few seconds away and every rule plays out in a test."""


def apology_policy(*, offer_after: float, ship_in: float, **extra: Any) -> dict[str, Any]:
    """Policy days of one second, and web lines offered a 10 % discount `offer_after` seconds
    after they start (`ship_in` seconds before ship-by): a wide window to accept it in a test."""
    return {
        "day_seconds": 1,
        "offer_valid_days": 80,
        "channels": {
            "web": {
                "handling_days": ship_in,
                "ladder": [
                    {
                        "name": "apology",
                        "offset_days": offer_after - ship_in,
                        "rules": [{"offers": [{"kind": "discount_code", "percent": 10}]}],
                    }
                ],
            }
        },
        **extra,
    }
