"""Store calls at the same moment, each from its own thread and its own connection: the
harness of the concurrent property tests (`tests/test_allocation_properties.py`,
`tests/test_locations_properties.py`)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from store.db import Database
from tests.support.stack import fresh_database

C = TypeVar("C")
R = TypeVar("R")


@dataclass
class Stores:
    backend: str
    dbs: list[Database]
    """One per thread: each has its own engine, so its own connection."""
    threads: ThreadPoolExecutor


@contextmanager
def concurrent_stores(backend: str, threads: int) -> Iterator[Stores]:
    """A fresh store of `backend` with its schema, opened `threads` times."""
    folder = tempfile.TemporaryDirectory(prefix="backorders-properties-")
    url, drop = fresh_database(backend, Path(folder.name))
    dbs = [Database(url) for _ in range(threads)]
    dbs[0].create_schema()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="allocation")
    try:
        yield Stores(backend, dbs, pool)
    finally:
        pool.shutdown()
        for db in dbs:
            db.dispose()
        drop()
        folder.cleanup()


def run_at_once(
    stores: Stores, calls: Sequence[C], run_call: Callable[[Database, C], R]
) -> list[R]:
    """Every call at the same moment, each from its own thread and connection."""
    start = threading.Barrier(len(calls))

    def run(index: int) -> R:
        start.wait(timeout=30)
        return run_call(stores.dbs[index], calls[index])

    futures = [stores.threads.submit(run, index) for index in range(len(calls))]
    return [future.result(timeout=120) for future in futures]
