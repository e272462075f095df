"""Value types every model of the service is built from: ids, money, quantities, instants,
free text, and the closed vocabularies (channels, tiers, ship policies).

They are the one place where a value is validated: the HTTP API, the Python client and the CLI
all build their requests from them, and workflow payloads reuse them, so a value that passes here
is one every workflow can use.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
)

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Ids become parts of workflow ids (`backorder:{order}:{line}`), so `:` and spaces are refused:
with them, order `a:b` line `c` and order `a` line `b:c` would be the same workflow."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


def _decimal_string(value: str) -> str:
    try:
        amount = Decimal(value)
    except ArithmeticError as exc:
        raise ValueError("must be a decimal string such as '19.99'") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite amount >= 0")
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ValueError("must have at most 4 decimal places")
    return value


DecimalString = Annotated[
    str, Field(pattern=r"^\d{1,12}(\.\d{1,4})?$"), AfterValidator(_decimal_string)
]

Quantity = Annotated[StrictInt, Field(gt=0, le=1_000_000)]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    """Stored and compared in UTC: SQLite keeps no offset, and queue order compares instants."""
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = LATEST  # past year 9999 in UTC: out of range all the same
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y} and {LATEST:%Y}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
"""A point in time with its offset, kept in UTC."""

PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Free text without control characters (tab and newlines allowed): PostgreSQL refuses NUL in
text, and a NUL accepted here would fail later, inside a workflow, instead of at the door."""


def text(max_length: int) -> Any:
    """A free-text field: 1 to `max_length` printable characters."""
    return Field(min_length=1, max_length=max_length, pattern=PRINTABLE)


class Strict(BaseModel):
    """Unknown fields are refused: a misspelt field must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(StrEnum):
    WEB = "web"
    AMAZON = "amazon"
    WALMART = "walmart"
    EBAY = "ebay"
    ETSY = "etsy"


class CustomerTier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"


class ShipPolicy(StrEnum):
    PARTIAL = "partial"
    """Ship whatever is allocated as soon as it is allocated."""
    COMPLETE = "complete"
    """Hold allocated units until the whole quantity is allocated, then ship once."""


def canonical_hash(model: BaseModel) -> str:
    """A stable hash of a request: equal bodies hash equal whatever their key order."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
