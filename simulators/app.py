"""Simulators of the outside services the service calls: carrier, payments, notifications,
storefront. They behave as the real APIs do where it matters for correctness:

- every POST needs a bearer token and an `Idempotency-Key` header;
- a repeated key is answered exactly as the first time and recorded once; the same key with a
  different body is refused (422), as payment APIs do;
- `GET /{service}/requests` lists, in order, every request accepted, with its key, so tests and
  people can see exactly what left the service;
- records live in a SQLite file in the state folder and survive a restart.

Faults can be injected at run time, per service or for all of them, to try the service against
flaky outside APIs (`PUT /_faults`, `GET /_faults`, `DELETE /_faults`; at startup from
`BACKORDERS_SIMULATOR_FAULTS`, the same JSON):

- `error_rate`: answer 500 or 503 without doing anything;
- `timeout_rate`: hold the request `timeout_seconds` (longer than the caller waits), then do
  the effect and answer to nobody, as a slow service finishing late does;
- `lost_response_rate`: do and record the effect, then answer 500 or drop the connection
  mid-answer: the caller cannot know it happened, retries with the same key, and must get the
  recorded answer back, not a second effect;
- `latency_ms` (+ up to `latency_jitter_ms`): delay before anything happens;
- `seed`: the same faults in the same order of requests.

Faults never touch the request log's rule: one effect per idempotency key. Only the POSTs of the
four services are faulted; `/requests`, `/healthz` and `/_faults` always answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from fastapi import Body, FastAPI, Header, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

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


FAULTS_ENV = "BACKORDERS_SIMULATOR_FAULTS"
"""Faults in force from startup: the JSON body `PUT /_faults` takes."""


class ServiceFaults(BaseModel):
    """How one service misbehaves. Each POST draws one outcome: an error, a timeout, a lost
    response, or a normal answer (the rest of the rates)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    error_rate: float = Field(0.0, ge=0, le=1)
    """Answer 500 or 503 without doing anything."""
    timeout_rate: float = Field(0.0, ge=0, le=1)
    """Hold the request `timeout_seconds`, then do the effect (the caller has given up)."""
    lost_response_rate: float = Field(0.0, ge=0, le=1)
    """Do and record the effect, then lose the answer (see `lost_response_mode`)."""
    lost_response_mode: Literal["error", "drop", "mixed"] = "mixed"
    """`error`: answer 500; `drop`: close the connection mid-answer; `mixed`: either, at
    random."""
    latency_ms: float = Field(0.0, ge=0, le=60_000)
    """Added before anything happens, on every POST."""
    latency_jitter_ms: float = Field(0.0, ge=0, le=60_000)
    """A random extra delay between 0 and this, on top of `latency_ms`."""
    timeout_seconds: float = Field(12.0, gt=0, le=120)
    """How long a timed-out request hangs: more than the caller's timeout (the service's is
    `BACKORDERS_HTTP_TIMEOUT_SECONDS`, 10 s by default)."""

    @model_validator(mode="after")
    def _rates_fit(self) -> Self:
        if self.error_rate + self.timeout_rate + self.lost_response_rate > 1:
            raise ValueError("error_rate + timeout_rate + lost_response_rate must be at most 1")
        return self


class FaultConfig(BaseModel):
    """Faults for every service (`all`) and per service; a service's own entry replaces `all`
    for it (no merging). Empty: no faults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    seed: int | None = None
    """Seeds each service's random draws: the same sequence of requests meets the same faults."""
    all: ServiceFaults | None = None
    carrier: ServiceFaults | None = None
    payments: ServiceFaults | None = None
    notifications: ServiceFaults | None = None
    storefront: ServiceFaults | None = None

    def for_service(self, service: str) -> ServiceFaults | None:
        own: ServiceFaults | None = getattr(self, service)
        return own if own is not None else self.all


class FaultConfigError(ValueError, RuntimeError):
    """`BACKORDERS_SIMULATOR_FAULTS` is malformed; the message names the variable and field.

    Both a ValueError (a configuration error) and a RuntimeError, which the embedded stack
    reports as "did not start" with this message rather than a traceback."""


def faults_from_env(environ: Mapping[str, str] | None = None) -> FaultConfig:
    """The faults `BACKORDERS_SIMULATOR_FAULTS` sets (none when unset or empty)."""
    text = (os.environ if environ is None else environ).get(FAULTS_ENV, "").strip()
    if not text:
        return FaultConfig()
    try:
        return FaultConfig.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise FaultConfigError(f"{FAULTS_ENV}: {problems}") from None


@dataclass
class FaultCounts:
    """What one service did to the POSTs it got since the simulators started."""

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    lost_responses: int = 0
    delayed: int = 0


@dataclass(frozen=True)
class _Plan:
    outcome: Literal["ok", "error", "timeout", "lost"]
    delay: float
    hang: float = 0.0
    status: int = 200
    drop: bool = False


class FaultInjector:
    """The faults in force and the draws that apply them. Runs on the server's event loop."""

    def __init__(self, config: FaultConfig) -> None:
        self.counts = {service: FaultCounts() for service in SERVICES}
        self.config = config
        self._random: dict[str, random.Random] = {}
        self.set(config)

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self._random = {
            service: random.Random(f"{config.seed}:{service}")
            if config.seed is not None
            else random.Random()
            for service in SERVICES
        }

    def draw(self, service: str) -> _Plan:
        counts = self.counts[service]
        counts.requests += 1
        faults = self.config.for_service(service)
        if faults is None:
            return _Plan("ok", 0.0)
        rng = self._random[service]
        # Always four draws, whatever the outcome: a seed gives the same faults to the same
        # sequence of requests.
        roll, jitter, status, drop = rng.random(), rng.random(), rng.random(), rng.random()
        delay = (faults.latency_ms + jitter * faults.latency_jitter_ms) / 1000
        if delay > 0:
            counts.delayed += 1
        if roll < faults.error_rate:
            counts.errors += 1
            return _Plan("error", delay, status=500 if status < 0.5 else 503)
        roll -= faults.error_rate
        if roll < faults.timeout_rate:
            counts.timeouts += 1
            return _Plan("timeout", delay, hang=faults.timeout_seconds)
        roll -= faults.timeout_rate
        if roll < faults.lost_response_rate:
            counts.lost_responses += 1
            mode = faults.lost_response_mode
            dropped = mode == "drop" or (mode == "mixed" and drop < 0.5)
            return _Plan("lost", delay, status=500, drop=dropped)
        return _Plan("ok", delay)

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": self.config.model_dump(mode="json", exclude_none=True),
            "counts": {service: asdict(counts) for service, counts in self.counts.items()},
        }


class _InjectedDrop(Exception):
    """Raised after half an answer, so that the server closes the connection (a lost
    response the caller sees as a broken connection)."""


class _DroppedResponse(Response):
    """Headers and the start of a body, then the connection closes."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"', "more_body": True})
        raise _InjectedDrop("injected fault: connection dropped after the effect")


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs every exception an app raises; the drops we inject on purpose are not
    errors worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _InjectedDrop))


def _hide_injected_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _HideInjectedDrops) for existing in logger.filters):
        logger.addFilter(_HideInjectedDrops())


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Authorization = Annotated[str | None, Header()]
JsonBody = Annotated[dict[str, Any], Body()]


def _money(body: dict[str, Any]) -> dict[str, Any]:
    return {"amount": body["amount"], "currency": body["currency"]}


def _require(authorization: str | None, key: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token")
    if not key:
        raise HTTPException(400, "missing Idempotency-Key header")
    return key


def create_app(state_dir: Path, faults: FaultConfig | None = None) -> FastAPI:
    """The simulators, recording in `state_dir`; `faults` in force from the start (default:
    those of `BACKORDERS_SIMULATOR_FAULTS`, or none)."""
    injector = FaultInjector(faults if faults is not None else faults_from_env())
    log = RequestLog(state_dir / "simulators.db")
    _hide_injected_drops()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        log.close()

    app = FastAPI(title="backorders simulators", description=__doc__, lifespan=lifespan)
    app.state.request_log = log
    app.state.faults = injector

    async def answer(
        service: str,
        path: str,
        key: str,
        body: dict[str, Any],
        make: Callable[[int], dict[str, Any]],
    ) -> Response:
        """The recorded answer for this key (made now if new), through the faults in force."""
        plan = injector.draw(service)
        if plan.delay > 0:
            await asyncio.sleep(plan.delay)
        if plan.outcome == "error":
            return JSONResponse(
                {"detail": f"injected fault: {service} failed, nothing was done"},
                status_code=plan.status,
            )
        if plan.outcome == "timeout":
            # The caller gives up first; the effect still happens, late, as with a slow service.
            await asyncio.sleep(plan.hang)
        recorded = await run_in_threadpool(log.answer, service, path, key, body, make)
        if plan.outcome == "lost":
            if plan.drop:
                return _DroppedResponse()
            return JSONResponse(
                {"detail": f"injected fault: {service} did it, but the answer was lost"},
                status_code=plan.status,
            )
        # A decline is recorded like any answer, and given again for the same key.
        return JSONResponse(
            recorded, status_code=402 if recorded.get("status") == "declined" else 200
        )

    def hold_refusal(key: str, body: dict[str, Any]) -> str | None:
        """Why the processor refuses a capture or void on one of its holds: unknown to it
        (a hold made at checkout) passes; a voided or expired hold, or more than it holds
        left, is refused, as a processor would."""
        if log.recorded("payments", key):
            return None  # a repeat is answered as the first was
        requests = log.list("payments")
        hold = next(
            (
                row
                for row in requests
                if row["path"] == "/authorizations"
                and row["response"].get("authorization_id") == body["authorization_id"]
            ),
            None,
        )
        if hold is None:
            return None
        on_hold = [
            row
            for row in requests
            if row["body"].get("authorization_id") == body["authorization_id"]
        ]
        if any(row["path"] == "/voids" for row in on_hold):
            return f"authorization {body['authorization_id']} was voided"
        if datetime.fromisoformat(hold["response"]["expires_at"]) <= datetime.now(UTC):
            return f"authorization {body['authorization_id']} has expired"
        captured = sum(
            (Decimal(row["body"]["amount"]) for row in on_hold if row["path"] == "/captures"),
            Decimal(0),
        )
        if captured + Decimal(str(body["amount"])) > Decimal(hold["response"]["amount"]):
            return (
                f"capturing {body['amount']} would exceed authorization "
                f"{body['authorization_id']} ({captured} of {hold['response']['amount']} used)"
            )
        return None

    @app.post("/payments/authorizations", response_model=None)
    async def create_authorization(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        """A hold on a payment method; like a processor's test cards, a method whose reference
        contains `decline` is declined (402)."""
        key = _require(authorization, idempotency_key)
        for field in ("reference", "payment_method", "amount", "currency"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        default_expiry = datetime.now(UTC) + timedelta(days=7)

        def make(seq: int) -> dict[str, Any]:
            if "decline" in str(body["payment_method"]):
                return {"status": "declined", "decline_code": "card_declined"}
            return {
                "authorization_id": f"auth_{seq:08d}",
                "status": "authorized",
                "amount": body["amount"],
                "currency": body["currency"],
                "expires_at": body.get("expires_at") or default_expiry.isoformat(),
            }

        return await answer("payments", "/authorizations", key, body, make)

    @app.post("/payments/captures", response_model=None)
    async def create_capture(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "authorization_id", "amount", "currency"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        refusal = await run_in_threadpool(hold_refusal, key, body)
        if refusal is not None:
            raise HTTPException(422, refusal)
        return await answer(
            "payments",
            "/captures",
            key,
            body,
            lambda seq: {"capture_id": f"cap_{seq:08d}", "status": "succeeded", **_money(body)},
        )

    @app.post("/payments/voids", response_model=None)
    async def create_void(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "authorization_id", "amount", "currency"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        return await answer(
            "payments",
            "/voids",
            key,
            body,
            lambda seq: {"void_id": f"void_{seq:08d}", "status": "voided", **_money(body)},
        )

    @app.post("/carrier/shipments", response_model=None)
    async def create_shipment(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "quantity"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        return await answer(
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

    @app.post("/payments/refunds", response_model=None)
    async def create_refund(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        for field in ("reference", "amount", "currency"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        return await answer(
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

    @app.post("/notifications/messages", response_model=None)
    async def send_message(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        for field in ("to", "subject", "body"):
            if field not in body:
                raise HTTPException(422, f"{field} is required")
        # Like a real provider refusing an undeliverable address; `.invalid` never resolves.
        if str(body["to"]).endswith(".invalid"):
            raise HTTPException(422, f"cannot deliver to {body['to']}")
        return await answer(
            "notifications",
            "/messages",
            key,
            body,
            lambda seq: {"message_id": f"msg_{seq:08d}", "status": "queued"},
        )

    @app.post("/storefront/discount-codes", response_model=None)
    async def create_discount_code(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        return await answer(
            "storefront",
            "/discount-codes",
            key,
            body,
            lambda seq: {"code": f"SORRY-{seq:06d}", "percent_off": body.get("percent_off", 10)},
        )

    @app.post("/storefront/loyalty-points", response_model=None)
    async def award_points(
        body: JsonBody, authorization: Authorization = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        key = _require(authorization, idempotency_key)
        return await answer(
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

    @app.get("/_faults")
    def get_faults() -> dict[str, Any]:
        """The faults in force, and what each service did since the simulators started."""
        return injector.snapshot()

    @app.put("/_faults")
    def set_faults(config: FaultConfig) -> dict[str, Any]:
        """Replace the faults in force (a 422 names a bad field); counts keep running."""
        injector.set(config)
        return injector.snapshot()

    @app.delete("/_faults")
    def clear_faults() -> dict[str, Any]:
        """No more faults (counts keep running)."""
        injector.set(FaultConfig())
        return injector.snapshot()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
