"""`python -m store.migrations revision "what changes"`: a developer's next revision.

It migrates a scratch SQLite store to the head, compares it with the models (`store.tables`)
and writes `versions/NNNN_what_changes.py` with the difference, numbered after the head.
Read it before committing: autogenerate misses some changes (a renamed column looks like one
dropped and one added) and PostgreSQL specifics want a look (types, partial indexes).
`tests/test_migrations.py` then checks that the models and the revisions agree on both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence

from alembic import command

from store.db import Database
from store.migrations import _config, head_revision


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m store.migrations", description="Write the store's next schema revision."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="a new revision from the models' changes")
    revision.add_argument("message", help="what the revision changes, in a few words")
    args = parser.parse_args(argv)
    next_id = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{scratch}/scratch.db")
        try:
            db.create_schema()
            with db.engine.begin() as connection:
                written = command.revision(
                    _config(connection), message=args.message, autogenerate=True, rev_id=next_id
                )
        finally:
            db.dispose()
    scripts = written if isinstance(written, list) else [written]
    for script in scripts:
        if script is not None:
            print(f"wrote {script.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
