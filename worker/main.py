"""Build and run the worker: every workflow and activity of the service on one task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.messages import check_templates
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.services import OutsideServices
from activities.signals import Signaller
from activities.store_activities import StoreActivities
from activities.supply import SupplyActivities
from activities.surveys import SurveyActivities, keep_sweep_schedule
from client import connect
from client.backorders import temporal_tls
from client.transport import async_client
from config import tracing
from config.loop import event_loop_factory
from config.settings import Settings
from domain import contract
from domain.policy import load_policy
from store.db import Database, open_store
from store.migrations import StoreSchemaError
from workflows.registry import WORKFLOWS

log = logging.getLogger("backorders.worker")


def workflow_runner(sandbox: bool = True) -> WorkflowRunner:
    """The sandbox, told that `domain` (pure models and names) need not be re-imported per run,
    nor OpenTelemetry, which the tracing interceptor's workflow half uses (`config.tracing`);
    or no sandbox (`BACKORDERS_WORKFLOW_SANDBOX`, off by default: see that setting)."""
    if not sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "domain", "pydantic", "opentelemetry"
        )
    )


def sdk_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving the SDK's worker metrics at `BACKORDERS_SDK_METRICS_ADDRESS`,
    for the worker process's client (one per process: it holds the listening port)."""
    bind = settings.sdk_metrics_bind
    if bind is None:
        return None
    host, port = bind
    metrics = PrometheusConfig(bind_address=f"{host}:{port}")
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


@dataclass
class Workers:
    """One worker per task queue, run and stopped together: the lines' queue, and the stock
    queue of receipts and catalog and purchase-order updates (`contract.stock_task_queue`).
    Both register every workflow and activity, so a stock workflow started on the lines' queue
    by an earlier release still finishes."""

    lines: Worker
    stock: Worker

    async def run(self) -> None:
        await asyncio.gather(self.lines.run(), self.stock.run())

    async def shutdown(self) -> None:
        await asyncio.gather(self.lines.shutdown(), self.stock.shutdown())


@asynccontextmanager
async def worker_for(client: Client, settings: Settings, db: Database) -> AsyncIterator[Workers]:
    """The configured workers and the HTTP client their activities use, closed together."""
    timeout = httpx.Timeout(settings.http_timeout_seconds)
    async with async_client(timeout=timeout) as http:
        tracing.instrument_http(http, settings)
        policy = load_policy(settings.policy_file)
        store = StoreActivities(
            db, policy.days(policy.receiving_days), policy.supplier_dates, policy
        )
        services = OutsideServices(settings, db, http)
        payments = PaymentActivities(services)
        signaller = Signaller(client)
        supply = SupplyActivities(db, client, policy)
        orders = OrderActivities(client, settings.task_queue)
        surveys = SurveyActivities(client, settings.task_queue, services)
        activities: list[Callable[..., Any]] = [
            store.record_line,
            store.release_line,
            store.record_receipt,
            store.apply_sku,
            store.record_outreach,
            store.substitute_line,
            store.find_substitutes,
            services.grant_offer,
            services.alert_subscribers,
            services.create_shipment,
            services.refund,
            services.send_message,
            signaller.signal_allocations,
            signaller.signal_release_moves,
            signaller.signal_ship_before_release,
            supply.apply_purchase_order,
            supply.refresh_etas,
            orders.join_order,
            orders.withdraw_from_order,
            surveys.start_survey,
            surveys.send_due_surveys,
            services.create_order_shipment,
            payments.authorize,
            payments.capture,
            payments.void,
        ]

        def worker(task_queue: str, cached: int, activity_slots: int) -> Worker:
            return Worker(
                client,
                task_queue=task_queue,
                workflows=WORKFLOWS,
                activities=activities,
                workflow_runner=workflow_runner(settings.workflow_sandbox),
                max_concurrent_activities=activity_slots,
                max_cached_workflows=cached,
                # Let running activities finish on Ctrl-C instead of being retried after restart.
                graceful_shutdown_timeout=timedelta(seconds=5),
            )

        try:
            await keep_sweep_schedule(
                client, settings.task_queue, timedelta(seconds=settings.survey_sweep_seconds)
            )
        except RPCError as exc:
            # The lines come first: they run without it; only the surveys wait in the store.
            log.error(
                "could not create or update the survey sweep's schedule (%s): due surveys "
                "stay in the store until a worker can",
                exc,
            )
        yield Workers(
            lines=worker(settings.task_queue, settings.worker_cached_workflows, 100),
            # Few and short-lived workflows; their fan-outs are the long activities.
            stock=worker(contract.stock_task_queue(settings.task_queue), 20, 20),
        )


async def run_worker(settings: Settings) -> None:
    """Run until cancelled (Ctrl-C): in-flight activities finish or are retried elsewhere.

    The store's schema must be at this release's revision: only a development SQLite store is
    migrated here; on PostgreSQL and in production run `backorders migrate` first
    (`store.db.migrates_itself` says why)."""
    settings.require_production_ready()
    db = open_store(settings)
    client = await connect(settings, runtime=sdk_runtime(settings))
    async with worker_for(client, settings, db) as worker:
        log.info(
            "worker polling task queues %r and %r at %s",
            settings.task_queue,
            contract.stock_task_queue(settings.task_queue),
            settings.temporal_target,
        )
        await worker.run()
    tracing.flush(settings)
    db.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        # Settings refused before anything starts, in one line naming the variable.
        settings.require_production_ready()
        temporal_tls(settings)
        check_templates(settings.templates_dir, load_policy(settings.policy_file))
    except ValueError as exc:
        raise SystemExit(f"worker: {exc}") from None
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_worker(settings))
    except StoreSchemaError as exc:
        # What to run, in one line, rather than a traceback.
        raise SystemExit(f"worker: {exc}") from None
    except KeyboardInterrupt:
        # SIGINT is how the container stops it (the image's STOPSIGNAL): a normal end.
        log.info("worker stopped")


if __name__ == "__main__":
    main()
