"""The event loop the service's processes run on: uvloop where it is installed (Linux and macOS,
a dependency of the package there), else asyncio's own.

uvloop runs the same asyncio code with its scheduling and socket handling in C; the worker
spends a tenth of its CPU in the event loop's own machinery and the API more (README:
Performance)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows: asyncio's loop
    uvloop = None  # type: ignore[assignment]


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """For `asyncio.Runner(loop_factory=...)`: None means asyncio's default loop."""
    return uvloop.new_event_loop if uvloop is not None else None
