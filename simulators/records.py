"""The simulators' memory: every accepted request, once per idempotency key, in a SQLite file
that survives a restart."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException

SERVICES = ("carrier", "payments", "notifications", "storefront")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    path TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body TEXT NOT NULL,
    response TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (service, idempotency_key)
)
"""


class RequestLog:
    """The simulators' memory: one row per accepted request."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def answer(
        self, service: str, path: str, key: str, body: dict[str, Any], make: Any
    ) -> dict[str, Any]:
        """The response for this key: the recorded one, or a new one made and recorded now."""
        text = json.dumps(body, sort_keys=True)
        with self._lock:
            row = self._db.execute(
                "SELECT body, response FROM requests WHERE service = ? AND idempotency_key = ?",
                (service, key),
            ).fetchone()
            if row is not None:
                if row[0] != text:
                    raise HTTPException(
                        422, f"Idempotency-Key {key!r} was already used with a different body"
                    )
                answer: dict[str, Any] = json.loads(row[1])
                return answer
            seq = self._next_seq()
            response = make(seq)
            self._db.execute(
                "INSERT INTO requests (service, path, idempotency_key, body, response, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (service, path, key, text, json.dumps(response), datetime.now(UTC).isoformat()),
            )
            return dict(response)

    def recorded(self, service: str, key: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM requests WHERE service = ? AND idempotency_key = ?", (service, key)
            ).fetchone()
        return row is not None

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM requests").fetchone()
        return int(row[0])

    def list(self, service: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, path, idempotency_key, body, response, received_at FROM requests"
                " WHERE service = ? ORDER BY seq",
                (service,),
            ).fetchall()
        return [
            {
                "seq": seq,
                "path": path,
                "idempotency_key": key,
                "body": json.loads(body),
                "response": json.loads(response),
                "received_at": received_at,
            }
            for seq, path, key, body, response, received_at in rows
        ]

    def close(self) -> None:
        self._db.close()
