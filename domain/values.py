"""Value types every model of the service is built from: ids, money, quantities, instants,
free text, and the closed vocabularies (channels, tiers, ship policies).

They are the one place where a value is validated: the HTTP API, the Python client and the CLI
all build their requests from them, and workflow payloads reuse them, so a value that passes here
is one every workflow can use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import iso4217
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    WithJsonSchema,
)

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Ids become parts of workflow ids (`backorder:{order}:{line}`), so `:` and spaces are refused:
with them, order `a:b` line `c` and order `a` line `b:c` would be the same workflow. ASCII only:
the same pattern guards bodies, paths and query parameters."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]

LOCATION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
MAIN_LOCATION = "main"
"""The stock location of requests that name none, and of everything before locations."""

Location = Annotated[str, Field(pattern=LOCATION_PATTERN)]
"""A stock location (a warehouse, a store's back room): a short lowercase identifier."""

DECIMAL_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,4})?$"
"""ASCII digits only: `\\d` would also take Arabic-Indic or Devanagari digits, which `Decimal`
reads as numbers (Arabic-Indic "12.5" became 12.5) though no payment service would."""


def _decimal_string(value: str) -> str:
    try:
        amount = Decimal(value)
    except ArithmeticError as exc:
        raise ValueError("must be a decimal string such as '19.99'") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite amount >= 0")
    return value


DecimalString = Annotated[str, Field(pattern=DECIMAL_PATTERN), AfterValidator(_decimal_string)]
"""An amount as a string of ASCII digits with at most 4 decimals (`19.99`): never a float."""


def decimal_places(amount: str) -> int:
    """Digits after the point of a `DecimalString` (`19.90` has 2)."""
    return len(amount.partition(".")[2])


def _currencies() -> dict[str, int]:
    """ISO 4217 currencies in use, with their minor units, from the standard's own published
    table (shipped by the `iso4217` package, kept current with each amendment). Left out: fund
    codes (`IsFund`, e.g. BOV, CLF, USN) and units that are no money for a sale (gold, SDR,
    test and "no currency" codes, whose minor units are "N.A."). Historic currencies are in
    another list of the standard, so they are not here."""
    found: dict[str, int] = {}
    for entry in iso4217.raw_xml.iter("CcyNtry"):
        code, units, name = entry.findtext("Ccy"), entry.findtext("CcyMnrUnts"), entry.find("CcyNm")
        is_fund = name is not None and name.get("IsFund") == "true"
        if code and units and units.isdigit() and not is_fund:
            found[code.strip()] = int(units)
    return found


MINOR_UNITS: dict[str, int] = _currencies()
"""Currency code -> how many decimals its amounts have (JPY 0, USD 2, BHD 3)."""


def _currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise ValueError("must be an ISO 4217 currency code in use, such as USD, EUR or JPY")
    return value


Currency = Annotated[
    str,
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(MINOR_UNITS)}),
]
"""An ISO 4217 currency in use (see `MINOR_UNITS`)."""

Quantity = Annotated[StrictInt, Field(gt=0, le=1_000_000)]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

LATEST = datetime(2100, 1, 1, tzinfo=UTC)

_DATE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_time_text(value: object) -> object:
    """Only a date and time written out: pydantic would also read a number, or a string of
    digits, as seconds since 1970 (an ETA of `5` told a customer "Thursday 01 January 1970")."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TIME.match(value):
        return value
    raise ValueError(
        "must be a date and time with its UTC offset, as a string such as 2026-11-22T10:00:00Z"
    )


def _utc_in_range(value: datetime) -> datetime:
    """Stored and compared in UTC: SQLite keeps no offset, and queue order compares instants."""
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = LATEST  # past year 9999 in UTC: out of range all the same
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y} and {LATEST:%Y}")
    return value


Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_utc_in_range)
]
"""A point in time with its offset (a naive one is refused), between EARLIEST and LATEST,
kept in UTC."""

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


ADDED_LATER = "added_later"
"""Marks a field a request model gained after its first release: `Field(..., json_schema_extra=
{ADDED_LATER: True})`. Left at its default, it stays out of the request's hash, so a request
sent before the field existed hashes as it did then (its repeat is still a repeat, not a
conflict)."""


def _hashed(model: BaseModel) -> dict[str, Any]:
    dumped: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        extra = field.json_schema_extra
        later = isinstance(extra, dict) and bool(extra.get(ADDED_LATER))
        if later and value == field.get_default(call_default_factory=True):
            continue
        dumped[name] = _plain(value)
    return dumped


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _hashed(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return _adapter(value.__class__).dump_python(value, mode="json")


@functools.cache
def _adapter(kind: type[Any]) -> TypeAdapter[Any]:
    """One adapter per type: building one builds its schema, which cost more than the rest of
    a start's hash."""
    return TypeAdapter(kind)


def canonical_hash(model: BaseModel) -> str:
    """A stable hash of a request: equal bodies hash equal whatever their key order, and a
    field added later and left at its default counts as absent (`ADDED_LATER`)."""
    text = json.dumps(_hashed(model), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
