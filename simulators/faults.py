"""Faults the simulators inject on purpose: errors, timeouts, lost answers, latency, per
service or for all of them (the module docstring of `simulators.app` describes each)."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Self

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.types import Receive, Scope, Send

from simulators.records import SERVICES

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
class Plan:
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

    def draw(self, service: str) -> Plan:
        counts = self.counts[service]
        counts.requests += 1
        faults = self.config.for_service(service)
        if faults is None:
            return Plan("ok", 0.0)
        rng = self._random[service]
        # Always four draws, whatever the outcome: a seed gives the same faults to the same
        # sequence of requests.
        roll, jitter, status, drop = rng.random(), rng.random(), rng.random(), rng.random()
        delay = (faults.latency_ms + jitter * faults.latency_jitter_ms) / 1000
        if delay > 0:
            counts.delayed += 1
        if roll < faults.error_rate:
            counts.errors += 1
            return Plan("error", delay, status=500 if status < 0.5 else 503)
        roll -= faults.error_rate
        if roll < faults.timeout_rate:
            counts.timeouts += 1
            return Plan("timeout", delay, hang=faults.timeout_seconds)
        roll -= faults.timeout_rate
        if roll < faults.lost_response_rate:
            counts.lost_responses += 1
            mode = faults.lost_response_mode
            dropped = mode == "drop" or (mode == "mixed" and drop < 0.5)
            return Plan("lost", delay, status=500, drop=dropped)
        return Plan("ok", delay)

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": self.config.model_dump(mode="json", exclude_none=True),
            "counts": {service: asdict(counts) for service, counts in self.counts.items()},
        }


class _InjectedDrop(Exception):
    """Raised after half an answer, so that the server closes the connection (a lost
    response the caller sees as a broken connection)."""


class DroppedResponse(Response):
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


def hide_injected_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _HideInjectedDrops) for existing in logger.filters):
        logger.addFilter(_HideInjectedDrops())
