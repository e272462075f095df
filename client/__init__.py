"""Python client for order systems that talk to Temporal directly (the HTTP API uses it too)."""

from client.backorders import (
    BackorderClient,
    CancelRefusedError,
    ChoiceRefusedError,
    ConflictError,
    LineNotFoundError,
    StartResult,
    UnknownSkuError,
    connect,
)

__all__ = [
    "BackorderClient",
    "CancelRefusedError",
    "ChoiceRefusedError",
    "ConflictError",
    "LineNotFoundError",
    "StartResult",
    "UnknownSkuError",
    "connect",
]
