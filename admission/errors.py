"""Why a request is not carried out. Every entry point raises these, and the HTTP API maps them
to statuses in one place (`api.errors`):

    AdmissionError
    ├── InvalidRequest(field, message)   422  a value is refused; names each field
    ├── NotFound(message)                404  no such line, SKU, subscription...
    ├── Conflict(message)                409  the ids are taken by another request
    ├── Refused(kind, message)           409 (410, 404 by kind)  the line's state refuses it
    └── Unavailable(part)                503  Temporal or the store did not answer; ask again
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


class AdmissionError(Exception):
    """Base of the errors a caller is expected to handle."""


@dataclass(frozen=True)
class FieldError:
    """One refused value, in FastAPI's shape: where (`("body", "quantity")`), why, and a type."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_json(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class InvalidRequest(AdmissionError, ValueError):
    """A value is refused; nothing was written. `field` names the first one
    (`in_stock_lines.0.sku`), `errors` every one."""

    def __init__(
        self,
        field: str | Sequence[str | int],
        message: str,
        *,
        kind: str = "value_error",
        location: str = "body",
    ) -> None:
        loc = (field,) if isinstance(field, str) else tuple(field)
        self.errors = [FieldError((location, *loc), message, kind)]
        super().__init__(self._summary())

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> InvalidRequest:
        first = errors[0]
        made = cls(first.loc[1:], first.msg, kind=first.type, location=str(first.loc[0]))
        made.errors = list(errors)
        made.args = (made._summary(),)
        return made

    @classmethod
    def from_validation(cls, error: ValidationError, *, location: str = "body") -> InvalidRequest:
        return cls.of(
            [
                FieldError((location, *each["loc"]), each["msg"], each["type"])
                for each in error.errors(include_url=False)
            ]
        )

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.errors[0].loc[1:])

    def _summary(self) -> str:
        return "; ".join(
            f"{'.'.join(str(part) for part in error.loc[1:]) or error.loc[0]}: {error.msg}"
            for error in self.errors
        )


class NotFound(AdmissionError, LookupError):
    """No such line, SKU, purchase order or subscription."""


class Conflict(AdmissionError):
    """The ids are taken by a request with another body: a client bug, never retried."""


class Refused(AdmissionError):
    """The line's state refuses what was asked (already shipped or cancelled, an offer used or
    expired...); the message is written for the person who asked."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        """The contract's error type (`domain.contract.ERROR_*`)."""
        self.message = message


class Unavailable(AdmissionError):
    """A part did not answer (Temporal, the store, a line without a worker): nothing was
    half-written, and asking again is safe."""

    def __init__(self, part: str, message: str | None = None) -> None:
        self.part = part
        self.message = message or f"{part} is unavailable; asking again is safe"
        super().__init__(self.message)
