"""Opening the store: SQLite by default, PostgreSQL through `BACKORDERS_DATABASE_URL`.

Every transaction that changes stock or a line first locks that line's SKU row
(`lock_sku`). One lock order (SKU, then lines) serializes the allocation of each SKU, which is
what makes "no oversell" and "priority order" hold under concurrent arrivals and cancels.

The schema is versioned (`store.migrations`); `open_store` decides whether a process brings it
up to date itself or only checks it.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, create_engine, select

from config.settings import Settings
from store import demand, migrations  # noqa: F401 - `demand` registers its flush hook
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

    def create_schema(self) -> migrations.MigrationReport:
        """Create the schema, or bring it to this release's revision, through the migrations
        (what a self-migrating process does at start; see `open_store`)."""
        return migrations.upgrade(self.engine)

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

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A connection for reads only, as `reading` (on SQLite it does not queue behind
        writers), for Core statements: a key lookup without the ORM's loading machinery."""
        with self._reader.connect() as connection:
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction for Core statements only, committed on success, rolled back on any
        error: for rows that no flush hook counts (messages, shipment plans)."""
        with self.engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()


def migrates_itself(settings: Settings, *, embedded: bool = False) -> bool:
    """Whether a process brings the store's schema up to date itself at start.

    Only in development, and only for a store that belongs to one machine: the default SQLite
    file, or any store of the embedded stack (`backorders dev`, the tests). A PostgreSQL store
    is shared by several API and worker processes that start at once, and during a rolling
    deploy by two releases: its schema changes in one deliberate step, `backorders migrate`
    (the compose file's `migrate` job), in development as in production, so that development
    rehearses the production procedure. In production nothing migrates implicitly.
    """
    if settings.environment != "development":
        return False
    return embedded or make_url(settings.store_url).get_backend_name() == "sqlite"


def open_store(settings: Settings, *, embedded: bool = False) -> Database:
    """The store of `settings`, its schema ready for this release: migrated here when
    `migrates_itself`, else checked; `migrations.StoreSchemaError` says what to run when it is
    not at this release's revision (nothing is changed then)."""
    db = Database(settings.store_url)
    try:
        if migrates_itself(settings, embedded=embedded):
            db.create_schema()
        else:
            migrations.require_current(db.engine)
    except BaseException:
        db.dispose()
        raise
    return db


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
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _enable_wal(cursor: Any, *, within: float = 30.0) -> None:
    """`PRAGMA journal_mode=WAL`, waiting out another connection's write lock.

    Two processes opening a new file at once (an API and a worker, each migrating it) race:
    the pragma may meet the other's write transaction, and SQLite answers "database is locked"
    at once, without its busy timeout, to avoid a deadlock. Asking again once it commits works.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_LOCK_SKU = select(SkuRow).where(SkuRow.sku == bindparam("sku")).with_for_update()
"""Built once: a statement built anew on every call costs more than its round trip."""


def lock_sku(session: Session, sku: str) -> SkuRow | None:
    """The SKU row, locked for the rest of the transaction (SQLite: the whole file already is)."""
    return session.exec(_LOCK_SKU, params={"sku": sku}).first()


def insert_new(connection: Connection, table: Table) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` into `table` for the connection's dialect, built once:
    a row whose key is there already is left as it is (the statement's rowcount says 0)."""
    return _insert_new(connection.dialect.name, table)


@functools.cache
def _insert_new(dialect: str, table: Table) -> Insert:
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The rowcount of an INSERT is kept only when asked for (psycopg's cursor is closed).
    return upsert(table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
