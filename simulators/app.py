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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from fastapi import Path as PathParam

from simulators import services
from simulators.faults import (
    FAULTS_ENV,
    FaultConfig,
    FaultConfigError,
    FaultInjector,
    faults_from_env,
    hide_injected_drops,
)
from simulators.records import SERVICES, RequestLog
from simulators.services import Simulator, SimulatorDep

__all__ = [
    "FAULTS_ENV",
    "SERVICES",
    "FaultConfig",
    "FaultConfigError",
    "create_app",
    "faults_from_env",
]

control = APIRouter()
"""What tests and people use to look at and steer the simulators; never faulted."""


@control.get("/{service}/requests")
def list_requests(
    service: Annotated[str, PathParam(pattern="^(carrier|payments|notifications|storefront)$")],
    sim: SimulatorDep,
) -> list[dict[str, Any]]:
    return sim.log.list(service)


@control.get("/_faults")
def get_faults(sim: SimulatorDep) -> dict[str, Any]:
    """The faults in force, and what each service did since the simulators started."""
    return sim.faults.snapshot()


@control.put("/_faults")
def set_faults(config: FaultConfig, sim: SimulatorDep) -> dict[str, Any]:
    """Replace the faults in force (a 422 names a bad field); counts keep running."""
    sim.faults.set(config)
    return sim.faults.snapshot()


@control.delete("/_faults")
def clear_faults(sim: SimulatorDep) -> dict[str, Any]:
    """No more faults (counts keep running)."""
    sim.faults.set(FaultConfig())
    return sim.faults.snapshot()


@control.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(state_dir: Path, faults: FaultConfig | None = None) -> FastAPI:
    """The simulators, recording in `state_dir`; `faults` in force from the start (default:
    those of `BACKORDERS_SIMULATOR_FAULTS`, or none)."""
    sim = Simulator(
        log=RequestLog(state_dir / "simulators.db"),
        faults=FaultInjector(faults if faults is not None else faults_from_env()),
    )
    hide_injected_drops()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        sim.log.close()

    app = FastAPI(title="backorders simulators", description=__doc__, lifespan=lifespan)
    app.state.simulator = sim
    app.state.faults = sim.faults
    app.include_router(services.router)
    app.include_router(control)
    return app
