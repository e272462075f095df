"""Opening the store: SQLite by default, PostgreSQL through `BACKORDERS_DATABASE_URL`.

Every transaction that changes stock or a line first locks that line's SKU row
(`lock_sku`). One lock order (SKU, then lines) serializes the allocation of each SKU, which is
what makes "no oversell" and "priority order" hold under concurrent arrivals and cancels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine, select

from store.tables import SkuRow


def normalize_url(url: str) -> str:
    """`postgresql://` means the psycopg 3 driver, the one this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_READ_ONLY = "backorders_read_only"


class Database:
    """An engine plus the transaction helper every store function uses."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            _sqlite_write_transactions(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._reader = self.engine.execution_options(**{_READ_ONLY: True})

    def create_schema(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back whole on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only: on SQLite it does not queue behind writers. Closing it ends
        the transaction without expiring what was read, so rows stay usable afterwards."""
        with Session(self._reader, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_write_transactions(engine: Engine) -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    pysqlite starts transactions lazily and in DEFERRED mode, so two connections that read and
    then write deadlock into "database is locked". BEGIN IMMEDIATE queues writers instead; WAL
    lets readers go on meanwhile.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def lock_sku(session: Session, sku: str) -> SkuRow | None:
    """The SKU row, locked for the rest of the transaction (SQLite: the whole file already is)."""
    return session.exec(select(SkuRow).where(SkuRow.sku == sku).with_for_update()).first()
