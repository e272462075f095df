"""The store's schema, versioned: Alembic revisions in `versions/`, run from the installed
package (no alembic.ini, no checkout), on SQLite and PostgreSQL alike.

A store is brought to this release's newest revision (its head) by `upgrade`, in one
transaction that holds the migration lock (PostgreSQL: an advisory lock, so that two
`backorders migrate` started at once take turns; SQLite: the write lock that BEGIN IMMEDIATE
takes), from any of three states:

- empty (none of the store's tables): every revision runs;
- made by the release before migrations (the tables, but no `alembic_version`): its tables
  are compared with the baseline revision's (`baseline.py`); if they match, the store is
  stamped at the baseline and the later revisions run; if not, nothing changes and the error
  lists the differences;
- versioned: the revisions after its own run.

A store at a revision this release does not know (a newer release migrated it) is never
touched. `require_current` is the check of the processes that must not migrate (see
`store.db.open_store`): it refuses any store not at the head, naming the command to run.

New revisions: `python -m store.migrations revision "what changes"` writes one from the
difference between `store.tables` and the head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from store.migrations import baseline

__all__ = [
    "BASELINE_REVISION",
    "MIGRATE_COMMAND",
    "MigrationReport",
    "SchemaState",
    "StoreSchemaError",
    "head_revision",
    "require_current",
    "schema_differences",
    "schema_state",
    "upgrade",
]

MIGRATE_COMMAND = "backorders migrate"
BASELINE_REVISION = "0001"
VERSION_TABLE = "alembic_version"
_PG_LOCK_KEY = 0x6261636B6F726472
"""The advisory lock every migration of a PostgreSQL store holds (the bytes of "backordr")."""


class StoreSchemaError(Exception):
    """The store's schema is not one this process may use or migrate; the message says why
    and what to run."""


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands against this release's revisions."""

    kind: Literal["empty", "legacy", "versioned"]
    """`legacy`: made by the release before migrations (tables, no recorded revision)."""
    revision: str | None
    """The revision recorded in the store; None for an empty or legacy store."""
    head: str
    """The newest revision this release knows."""
    known: bool
    """False when the recorded revision is not one of this release's (a newer release's)."""

    @property
    def is_current(self) -> bool:
        return self.revision == self.head

    def describe(self) -> str:
        if self.kind == "empty":
            return "an empty store (no schema revision)"
        if self.kind == "legacy":
            return "a store made before migrations (no schema revision)"
        return f"revision {self.revision}"


@dataclass(frozen=True)
class MigrationReport:
    """What `upgrade` found and did."""

    store: str
    """The store's URL, password hidden."""
    before: SchemaState
    applied: list[str]
    """Revisions run, oldest first."""

    def lines(self) -> list[str]:
        head = self.before.head
        said = [f"store: {self.store}", f"found {self.before.describe()}"]
        if self.before.kind == "legacy":
            said.append(
                f"its tables match the baseline: recorded it at revision {BASELINE_REVISION}"
            )
        said += [f"applied {revision}: {_summary(revision)}" for revision in self.applied]
        if self.applied or self.before.kind == "legacy":
            said.append(f"now at revision {head}, the newest this release knows")
        else:
            said.append(f"already at revision {head}, the newest this release knows: nothing to do")
        return said


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    # A package resource, found through importlib: works from the installed wheel.
    config.set_main_option("script_location", "store:migrations")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships the baseline
        raise RuntimeError("store/migrations/versions holds no revision")
    return head


def _summary(revision: str) -> str:
    script = _scripts().get_revision(revision)
    return script.doc if script is not None else ""


def _display(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _read_state(connection: Connection) -> SchemaState:
    tables = set(inspect(connection).get_table_names())
    known_revisions = {script.revision for script in _scripts().walk_revisions()}
    revision: str | None = None
    if VERSION_TABLE in tables:
        heads = MigrationContext.configure(connection).get_current_heads()
        if len(heads) > 1:
            raise StoreSchemaError(
                f"the store records several schema revisions ({', '.join(heads)}); "
                "this project's revisions form one line, so the store was changed by hand"
            )
        revision = heads[0] if heads else None
    if revision is not None:
        kind: Literal["empty", "legacy", "versioned"] = "versioned"
    elif tables & set(baseline.metadata().tables):
        kind = "legacy"
    else:
        kind = "empty"
    return SchemaState(
        kind=kind,
        revision=revision,
        head=head_revision(),
        known=revision is None or revision in known_revisions,
    )


def schema_state(engine: Engine) -> SchemaState:
    """Where the store's schema stands (reads only)."""
    with engine.connect() as connection:
        return _read_state(connection)


def schema_differences(connection: Connection, metadata: Any) -> list[str]:
    """How the store's tables differ from `metadata`'s (tables, columns and their types and
    nullability, indexes, constraints), in words; tables `metadata` does not name are ignored,
    so that the store may share its database."""
    ours = set(metadata.tables)

    def include_name(name: str | None, kind: str, _parents: Any) -> bool:
        return kind != "table" or name in ours

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return [_describe(diff) for diff in compare_metadata(context, metadata)]


def _describe(diff: Any) -> str:
    """One difference from Alembic's comparison, in words."""
    if isinstance(diff, list):  # the changes of one column
        return "; ".join(_describe(change) for change in diff)
    kind, *details = diff
    if kind.startswith("modify_"):
        _schema, table, column, _info, in_store, expected = details
        what = kind.removeprefix("modify_")
        return f"column {table}.{column}: {what} is {in_store}, expected {expected}"
    subject = details[-1]
    name = getattr(subject, "name", subject)
    if kind.endswith("_column"):
        name = f"{details[1]}.{name}"
    noun = kind.split("_", 1)[1].replace("_", " ")
    if kind.startswith("add_"):
        return f"{noun} {name} is missing"
    return f"{noun} {name} is not expected"


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the migration lock; it commits only if everything in it worked."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield connection


def _newer_message(engine: Engine, state: SchemaState) -> str:
    return (
        f"the store at {_display(engine)} is at schema revision {state.revision}, which this "
        f"release of backorders does not know (it expects {state.head}): a newer release "
        f"migrated it. Run that release's API and workers (its `{MIGRATE_COMMAND}` did this); "
        f"this one can use the store only once its schema is back at revision {state.head}"
    )


def upgrade(engine: Engine, *, target: str = "head") -> MigrationReport:
    """Bring the store to this release's head, or to the revision `target` (see the module's
    docstring); StoreSchemaError, with nothing changed, when its revision is unknown or its
    pre-migration tables differ from the baseline."""
    with _locked(engine) as connection:
        before = _read_state(connection)
        if not before.known:
            raise StoreSchemaError(_newer_message(engine, before))
        config = _config(connection)
        start = before.revision
        if before.kind == "legacy":
            differences = schema_differences(connection, baseline.metadata())
            if differences:
                raise StoreSchemaError(
                    f"the store at {_display(engine)} has backorders tables but no schema "
                    f"revision, and they differ from the baseline (revision "
                    f"{BASELINE_REVISION}): {'; '.join(differences)}. Nothing was changed: "
                    "bring these tables to the baseline by hand, or start on an empty database"
                )
            command.stamp(config, BASELINE_REVISION)
            start = BASELINE_REVISION
        upper = before.head if target == "head" else target
        applied = [
            script.revision
            for script in _scripts().iterate_revisions(upper, start or "base")
            if script.revision != start
        ]
        if applied:
            command.upgrade(config, target)
    return MigrationReport(store=_display(engine), before=before, applied=applied[::-1])


def require_current(engine: Engine) -> SchemaState:
    """The store's state if it is at this release's head; otherwise StoreSchemaError naming
    the store's revision, the one expected, and what to run."""
    state = schema_state(engine)
    if state.is_current:
        return state
    if not state.known:
        raise StoreSchemaError(_newer_message(engine, state))
    raise StoreSchemaError(
        f"the store at {_display(engine)} is not migrated: found {state.describe()}, this "
        f"release expects revision {state.head}. Run `{MIGRATE_COMMAND}` (with the same "
        "BACKORDERS_DATABASE_URL), then start the API and workers again"
    )
