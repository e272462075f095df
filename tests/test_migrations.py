"""The store's schema migrations (README: "Migrations"), on SQLite and on PostgreSQL.

- From empty, the migrations make exactly the schema the models make with `create_all`, and
  the models and the migrations never drift apart (a model change without a revision fails).
- A store made by the release before migrations (by `create_all`, without a recorded revision)
  is recognised, recorded at the baseline and upgraded, its rows kept; one whose tables differ
  from the baseline is left alone, the differences named.
- Processes that must not migrate (PostgreSQL, production) refuse a store that is not at their
  revision, naming both revisions and `backorders migrate`; the embedded default migrates
  itself.
- `backorders migrate` is idempotent, and two at once take turns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

from config.settings import Settings
from store import migrations
from store.db import Database, migrates_itself, normalize_url, open_store
from store.migrations import baseline
from tests.support.stack import fresh_database, postgres_database

SCRIPT = Path(sys.executable).parent / "backorders"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEAD = migrations.head_revision()


@dataclass
class Stores:
    """Empty stores of one backend (SQLite files or PostgreSQL databases), and the databases
    opened on them; everything is closed and dropped when the test ends."""

    backend: str
    folder: Path
    urls: list[str] = field(default_factory=list)
    opened: list[Database] = field(default_factory=list)
    drops: list[Callable[[], None]] = field(default_factory=list)

    def new(self) -> str:
        url, drop = fresh_database(self.backend, self.folder)
        self.urls.append(url)
        self.drops.append(drop)
        return url

    def open(self, url: str | None = None) -> Database:
        self.opened.append(Database(url or self.new()))
        return self.opened[-1]

    def made_before_migrations(self) -> Database:
        """A store as the release before migrations left it: its `create_all`, and a row."""
        db = self.open()
        baseline.metadata().create_all(db.engine)
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO skus (sku, name, free_stock, stock_in_total, substitutes, "
                    "updated_at) VALUES ('SKU-OLD', 'Kept', 3, 3, '[]', CURRENT_TIMESTAMP)"
                )
            )
        return db


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    made = Stores(request.param, tmp_path)
    made.new()  # an unreachable PostgreSQL skips (or in CI fails) the test here, before it starts
    try:
        yield made
    finally:
        for db in made.opened:
            db.dispose()
        for drop in made.drops:
            drop()


def schema_snapshot(url: str) -> dict[str, Any]:
    """Everything inspection tells of the store's tables (the version table aside): columns
    with types, nullability and defaults, primary keys, indexes (partial ones with their
    condition), unique constraints, foreign keys, checks."""
    engine = create_engine(normalize_url(url))
    try:
        inspector = inspect(engine)
        snapshot: dict[str, Any] = {}
        for table in sorted(set(inspector.get_table_names()) - {migrations.VERSION_TABLE}):
            snapshot[table] = {
                "columns": [
                    {key: repr(value) for key, value in column.items()}
                    for column in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table),
                "indexes": sorted(
                    (
                        # A partial index's condition comes back as a clause: compare its text.
                        {**index, "dialect_options": _text_values(index.get("dialect_options"))}
                        for index in inspector.get_indexes(table)
                    ),
                    key=lambda index: str(index["name"]),
                ),
                "unique": sorted(
                    inspector.get_unique_constraints(table), key=lambda u: str(u["name"])
                ),
                "foreign_keys": inspector.get_foreign_keys(table),
                "checks": inspector.get_check_constraints(table),
            }
        return snapshot
    finally:
        engine.dispose()


def _text_values(options: dict[str, Any] | None) -> dict[str, str]:
    return {key: str(value) for key, value in (options or {}).items()}


def stored_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def tables(db: Database) -> set[str]:
    with db.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def migrate_command(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`backorders migrate` as an operator runs it, on the store at `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    env["BACKORDERS_DATABASE_URL"] = url
    return subprocess.run(  # noqa: S603 - our own console script
        [str(SCRIPT), "migrate", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_migrating_an_empty_store_makes_exactly_what_create_all_makes(stores: Stores) -> None:
    made_by_create_all = stores.open()
    SQLModel.metadata.create_all(made_by_create_all.engine)
    migrated = stores.open()
    report = migrated.create_schema()
    assert report.before.kind == "empty"
    assert report.applied[0] == migrations.BASELINE_REVISION
    assert report.applied[-1] == HEAD == stored_revision(migrated)
    expected = schema_snapshot(made_by_create_all.url)
    assert set(expected) == set(SQLModel.metadata.tables)
    assert schema_snapshot(migrated.url) == expected


def test_the_models_and_the_migrations_do_not_drift(stores: Stores) -> None:
    """A change to store/tables.py without a revision fails here: write one with
    `python -m store.migrations revision "what changes"`."""
    db = stores.open()
    db.create_schema()
    with db.engine.connect() as connection:
        assert migrations.schema_differences(connection, SQLModel.metadata) == []


def test_the_baseline_revision_makes_the_schema_of_the_release_before_migrations(
    stores: Stores,
) -> None:
    """Revision 0001 makes exactly the frozen schema of the release before migrations (what its
    stores hold), whatever later revisions add."""
    migrated = stores.open()
    report = migrations.upgrade(migrated.engine, target=migrations.BASELINE_REVISION)
    assert report.applied == [migrations.BASELINE_REVISION]
    frozen = stores.open()
    baseline.metadata().create_all(frozen.engine)
    assert schema_snapshot(migrated.url) == schema_snapshot(frozen.url)


def test_a_store_made_before_migrations_is_recognised_recorded_and_upgraded(
    stores: Stores,
) -> None:
    db = stores.made_before_migrations()
    report = db.create_schema()
    assert report.before.kind == "legacy"
    assert report.before.revision is None
    assert stored_revision(db) == HEAD
    assert "its tables match the baseline" in "\n".join(report.lines())
    with db.engine.connect() as connection:
        kept = connection.execute(text("SELECT free_stock FROM skus WHERE sku = 'SKU-OLD'"))
        assert kept.scalar() == 3
    assert db.create_schema().applied == []


def test_a_store_made_before_migrations_but_changed_since_is_left_alone(stores: Stores) -> None:
    db = stores.made_before_migrations()
    with db.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_lines_queue"))
    with pytest.raises(migrations.StoreSchemaError) as refused:
        db.create_schema()
    message = str(refused.value)
    assert "index ix_lines_queue is missing" in message
    assert "Nothing was changed" in message
    assert migrations.VERSION_TABLE not in tables(db)


def test_processes_that_must_not_migrate_refuse_an_unmigrated_store(stores: Stores) -> None:
    empty, legacy = stores.open(), stores.made_before_migrations()
    for db, found in ((empty, "an empty store"), (legacy, "a store made before migrations")):
        with pytest.raises(migrations.StoreSchemaError) as refused:
            open_store(Settings(database_url=db.url, environment="production"))
        message = str(refused.value)
        assert f"not migrated: found {found} (no schema revision)" in message
        assert f"expects revision {HEAD}" in message
        assert "Run `backorders migrate`" in message
        assert migrations.VERSION_TABLE not in tables(db)


def test_a_store_at_a_newer_revision_is_refused_and_never_touched(stores: Stores) -> None:
    db = stores.open()
    db.create_schema()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for environment in ("development", "production"):
        with pytest.raises(migrations.StoreSchemaError) as refused:
            open_store(Settings(database_url=db.url, environment=environment), embedded=True)
        message = str(refused.value)
        assert "revision 9999" in message and f"expects {HEAD}" in message
        assert "`backorders migrate`" in message
    result = migrate_command(db.url)
    assert result.returncode == 1, result.stdout
    assert "revision 9999" in result.stderr
    assert stored_revision(db) == "9999"


def test_the_embedded_default_migrates_itself(tmp_path: Path) -> None:
    db = open_store(Settings(state_dir=tmp_path))  # SQLite in the state folder, development
    try:
        assert stored_revision(db) == HEAD
    finally:
        db.dispose()


def test_who_migrates_itself() -> None:
    sqlite = Settings(database_url="sqlite:////tmp/store.db")
    postgres = Settings(database_url="postgresql://backorders@db/backorders")
    assert migrates_itself(sqlite)
    assert not migrates_itself(postgres)
    assert migrates_itself(postgres, embedded=True)  # `backorders dev`, the tests
    for settings in (sqlite, postgres):
        production = settings.model_copy(update={"environment": "production"})
        assert not migrates_itself(production)
        assert not migrates_itself(production, embedded=True)


def test_backorders_migrate_is_idempotent(stores: Stores) -> None:
    url = stores.new()
    first = migrate_command(url)
    assert first.returncode == 0, first.stderr
    assert f"applied {migrations.BASELINE_REVISION}" in first.stdout
    assert f"now at revision {HEAD}" in first.stdout
    again = migrate_command(url)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert "applied" not in again.stdout
    check = migrate_command(url, "--check")
    assert check.returncode == 0, check.stderr
    made_by_create_all = stores.open()
    SQLModel.metadata.create_all(made_by_create_all.engine)
    assert schema_snapshot(url) == schema_snapshot(made_by_create_all.url)


def test_backorders_migrate_check_fails_on_an_unmigrated_store(stores: Stores) -> None:
    result = migrate_command(stores.new(), "--check")
    assert result.returncode == 1
    assert "`backorders migrate`" in result.stderr


def test_two_migrations_at_once_take_turns(stores: Stores) -> None:
    url = stores.new()
    dbs = [stores.open(url), stores.open(url)]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda db: db.create_schema(), dbs))
    nothing, everything = sorted((report.applied for report in reports), key=len)
    assert nothing == [] and everything[-1] == HEAD
    assert stored_revision(dbs[0]) == HEAD


@pytest.mark.parametrize("module", ["worker.main", "api.app"])
def test_the_worker_and_the_api_refuse_an_unmigrated_postgresql_store(
    module: str, tmp_path: Path
) -> None:
    url, drop = postgres_database()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
        env |= {
            "BACKORDERS_DATABASE_URL": url,
            "BACKORDERS_STATE_DIR": str(tmp_path),
            # Never reached: the store is checked before Temporal is dialled.
            "BACKORDERS_TEMPORAL_ADDRESS": "127.0.0.1:9",
            "BACKORDERS_SDK_METRICS_ADDRESS": "",
        }
        result = subprocess.run(  # noqa: S603 - our own modules
            [sys.executable, "-m", module],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        drop()
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert "not migrated" in last_line
    assert f"expects revision {HEAD}" in last_line
    assert "Run `backorders migrate`" in last_line
    assert "Traceback" not in result.stderr
