"""Alembic's environment for the store. `store.migrations` runs it on a connection it hands over
in `config.attributes["connection"]`, inside the transaction that holds the migration lock, so
that reading the revision, migrating and recording the new revision happen as one."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import store.tables  # noqa: F401 - puts the tables on SQLModel.metadata, for autogenerate

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the store's migrations run through `backorders migrate` (or store.migrations), "
        "which hands them a connection; there is no alembic.ini"
    )
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
