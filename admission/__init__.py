"""The service layer between the entry points (HTTP routers, the Python client, the CLI through
the HTTP API) and Temporal and the store: validation, idempotency and the read models live here.

    admission = Admission(settings=settings, temporal=client, db=db)
    done = await admission.start(ORDER_SYSTEM, body)     # Done(status=201, answer=StartAnswer)
    line = await admission.line("991", "1")              # LineStatus

Errors: `admission.errors` (InvalidRequest, NotFound, Conflict, Refused, Unavailable).
"""

from admission.actors import OPS, ORDER_SYSTEM, Actor, Role
from admission.errors import (
    AdmissionError,
    Conflict,
    FieldError,
    InvalidRequest,
    NotFound,
    Refused,
    Unavailable,
)
from admission.service import IDEMPOTENCY_KEY_PATTERN, Admission, Done
from admission.workflows import Started, Workflows

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "OPS",
    "ORDER_SYSTEM",
    "Actor",
    "Admission",
    "AdmissionError",
    "Conflict",
    "Done",
    "FieldError",
    "InvalidRequest",
    "NotFound",
    "Refused",
    "Role",
    "Started",
    "Unavailable",
    "Workflows",
]
