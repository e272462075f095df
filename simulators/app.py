"""Simulators of the outside services the service calls: carrier, payments, notifications,
storefront. They behave as the real APIs do where it matters for correctness:

- every POST needs a bearer token and an `Idempotency-Key` header;
- a repeated key is answered exactly as the first time and recorded once; the same key with a
  different body is refused (422), as payment APIs do;
- `GET /{service}/requests` lists, in order, every request accepted, with its key, so tests and
  people can see exactly what left the service;
- records live in a SQLite file in the state folder and survive a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException
from fastapi import Path as PathParam

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


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Authorization = Annotated[str | None, Header()]
JsonBody = Annotated[dict[str, Any], Body()]


def _require(authorization: str | None, key: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token")
    if not key:
        raise HTTPException(400, "missing Idempotency-Key header")
    return key


def create_app(state_dir: Path) -> FastAPI:
    log = RequestLog(state_dir / "simulators.db")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        log.close()

    app = FastAPI(title="backorders simulators", description=__doc__, lifespan=lifespan)
    app.state.request_log = log

    @app.post("/carrier/shipments")
    def create_shipment(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "quantity"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        return log.answer(
            "carrier",
            "/shipments",
            key,
            body,
            lambda seq: {
                "shipment_id": f"shp_{seq:08d}",
                "tracking_number": f"1ZBO{seq:012d}",
                "service_level": body.get("service_level", "standard"),
            },
        )

    @app.post("/payments/refunds")
    def create_refund(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "amount", "currency"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        return log.answer(
            "payments",
            "/refunds",
            key,
            body,
            lambda seq: {
                "refund_id": f"re_{seq:08d}",
                "status": "succeeded",
                "amount": body["amount"],
                "currency": body["currency"],
            },
        )

    @app.post("/notifications/messages")
    def send_message(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        key = _require(authorization, idempotency_key)
        for field in ("to", "subject", "body"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        # Like a real provider refusing an undeliverable address; `.invalid` never resolves.
        if str(body["to"]).endswith(".invalid"):
            raise HTTPException(422, f"cannot deliver to {body['to']}")
        return log.answer(
            "notifications",
            "/messages",
            key,
            body,
            lambda seq: {"message_id": f"msg_{seq:08d}", "status": "queued"},
        )

    @app.post("/storefront/discount-codes")
    def create_discount_code(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        key = _require(authorization, idempotency_key)
        return log.answer(
            "storefront",
            "/discount-codes",
            key,
            body,
            lambda seq: {"code": f"SORRY-{seq:06d}", "percent_off": body.get("percent_off", 10)},
        )

    @app.post("/storefront/loyalty-points")
    def award_points(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        key = _require(authorization, idempotency_key)
        return log.answer(
            "storefront",
            "/loyalty-points",
            key,
            body,
            lambda seq: {"award_id": f"pts_{seq:08d}", "points": body.get("points", 0)},
        )

    @app.get("/{service}/requests")
    def list_requests(
        service: Annotated[str, PathParam(pattern="^(carrier|payments|notifications|storefront)$")],
    ) -> list[dict[str, Any]]:
        return log.list(service)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
