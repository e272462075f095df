"""Requests sent with an `Idempotency-Key` header, and the answers they were given
(`IdempotencyKeyRow`).

A key is claimed before the request is carried out and completed with its answer after, so
that two copies of one request racing each other cannot both be carried out: the second finds
the claim and is told to ask again. A claim whose request died with its process is taken over
once it is `STALE_CLAIM` old; a key is forgotten after `RETENTION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.tables import IdempotencyKeyRow, as_utc, utcnow

RETENTION = timedelta(hours=24)
"""How long an answer is kept for its key; a client retries within minutes, not days."""
STALE_CLAIM = timedelta(minutes=2)
"""Longer than any request takes (a cancel waits at most 40 s): a claim this old was lost."""
IN_PROGRESS = 0
"""`status_code` of a claimed key whose request is still being carried out."""


class Found(Enum):
    NEW = "new"
    """Claimed now: carry the request out, then `complete` (or `release` if it failed)."""
    ANSWERED = "answered"
    """The same request was answered already: answer it the same again."""
    OTHER_BODY = "other_body"
    """The key was used with another body."""
    IN_PROGRESS = "in_progress"
    """The same request is being carried out right now, by another call."""


@dataclass(frozen=True)
class Claim:
    found: Found
    status_code: int = IN_PROGRESS
    response_json: str = ""


def claim(
    db: Database, *, scope: str, key: str, request_hash: str, now: datetime | None = None
) -> Claim:
    """Claim `key` in `scope` for a request whose body hashes to `request_hash`."""
    now = now or utcnow()
    for _ in range(2):  # a second look when another transaction inserted the key meanwhile
        try:
            with db.transaction() as session:
                row = session.get(IdempotencyKeyRow, (scope, key))
                if row is not None and now - as_utc(row.created_at) < _lifetime(row):
                    if row.request_hash != request_hash:
                        return Claim(Found.OTHER_BODY)
                    if row.status_code == IN_PROGRESS:
                        return Claim(Found.IN_PROGRESS)
                    return Claim(Found.ANSWERED, row.status_code, row.response_json)
                if row is None:
                    row = IdempotencyKeyRow(
                        scope=scope,
                        key=key,
                        request_hash=request_hash,
                        status_code=IN_PROGRESS,
                        response_json="",
                    )
                row.request_hash = request_hash
                row.status_code = IN_PROGRESS
                row.response_json = ""
                row.created_at = now
                session.add(row)
                return Claim(Found.NEW)
        except IntegrityError:
            continue
    return Claim(Found.IN_PROGRESS)


def _lifetime(row: IdempotencyKeyRow) -> timedelta:
    return STALE_CLAIM if row.status_code == IN_PROGRESS else RETENTION


def complete(db: Database, *, scope: str, key: str, status_code: int, response_json: str) -> None:
    """Record the answer of a claimed key."""
    with db.transaction() as session:
        row = session.get(IdempotencyKeyRow, (scope, key))
        if row is not None:
            row.status_code = status_code
            row.response_json = response_json
            session.add(row)


def release(db: Database, *, scope: str, key: str) -> None:
    """Give a claim up (its request failed): the next request with the key is carried out."""
    with db.transaction() as session:
        row = session.get(IdempotencyKeyRow, (scope, key))
        if row is not None and row.status_code == IN_PROGRESS:
            session.delete(row)
