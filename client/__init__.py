"""Clients of the service.

- `client.BackorderClient`: the Python client, on the service layer (store and Temporal).
- `client.http.ApiClient`: the v1 HTTP API over httpx, as the CLI, the demo and the benchmarks
  use it (imported on its own: it needs no more than httpx and the models).
- `client.connect`: the Temporal client every process of the service uses.

The Python client's names load on first use, so that `client.http` stays light for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admission.errors import (
        AdmissionError,
        Conflict,
        InvalidRequest,
        NotFound,
        Refused,
        Unavailable,
    )
    from client.backorders import BackorderClient, connect

_LAZY = {
    "BackorderClient": "client.backorders",
    "connect": "client.backorders",
    "AdmissionError": "admission.errors",
    "Conflict": "admission.errors",
    "InvalidRequest": "admission.errors",
    "NotFound": "admission.errors",
    "Refused": "admission.errors",
    "Unavailable": "admission.errors",
}

__all__ = [
    "AdmissionError",
    "BackorderClient",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Refused",
    "Unavailable",
    "connect",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'client' has no attribute {name!r}")
