"""`eventually`: the one way a test waits for the stack to get somewhere. An accepted request's
workflow acts a moment after the API answered, so tests poll, with a bound, and fail naming what
never happened and the last thing seen."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    within: float = 30.0,
    every: float = 0.1,
    what: str = "the condition",
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """What `read` gives once `done` holds of it. `read` is awaited (a blocking store read goes
    as `lambda: asyncio.to_thread(...)`); exceptions in `ignoring` (a connection refused while
    a server starts) count as "not yet". AssertionError after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = "nothing read"
    while True:
        try:
            value = await read()
            last = value
            if done(value):
                return value
        except ignoring as exc:
            last = exc
        if loop.time() > deadline:
            raise AssertionError(f"{what} never held within {within} s; last: {last!r}")
        await asyncio.sleep(every)
