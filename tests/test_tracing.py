"""Traces over OTLP/HTTP (config/tracing.py), read from a real OTLP/HTTP receiver in the test.

With `BACKORDERS_OTLP_ENDPOINT` set, one start with payment terms is one trace: the API's
server span, the Temporal client's StartWorkflow under it, and under that (from the workflow's
headers) the line's RunWorkflow and each activity's StartActivity, with its RunActivity (in
the worker) under it, and under those the HTTP calls to the payments processor, the
notifications service and the carrier.
Unset, nothing traces: no interceptor, no instrumentation, no tracer provider.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable

from temporalio.testing import WorkflowEnvironment

from config import tracing
from tests.support.factories import backorder, new_id
from tests.support.otlp import ReceivedSpan, otlp_receiver
from tests.support.poll import eventually
from tests.support.stack import running_stack

SERVER, CLIENT = 2, 3
"""`Span.SpanKind` values of OTLP's protobuf."""
ACTIVITIES = ("send_message", "create_shipment", "capture_payment")
"""Activities that call the notifications service, the carrier and the payments processor."""


def chain(spans: Iterable[ReceivedSpan], leaf: ReceivedSpan) -> list[str]:
    """The names from the trace's root down to `leaf`, following parent ids."""
    by_id = {span.span_id: span for span in spans}
    names = [leaf.name]
    while leaf.parent_id:
        leaf = by_id[leaf.parent_id]
        names.append(leaf.name)
    return names[::-1]


async def test_one_start_its_workflow_activities_and_outside_calls_share_one_trace(
    temporal_env: WorkflowEnvironment,
) -> None:
    with otlp_receiver() as receiver:
        overrides = {"otlp_endpoint": receiver.url}
        async with running_stack("sqlite", temporal_env, settings_overrides=overrides) as stack:
            sku, order = new_id("sku"), new_id()
            await stack.put_sku(sku)
            body = backorder(
                order, sku, 1, payment={"reference": f"card_{order}", "captured_amount": "0"}
            )
            assert (await stack.start(body)).status_code == 201
            await stack.wait_state(order, "waiting")
            await stack.receive(sku, 1)
            await stack.finished(order)
            workflow_id = (await stack.line(order))["workflow_id"]

            async def traced() -> list[ReceivedSpan]:
                """The start's trace, once the line's shipment has reached the receiver."""
                assert await asyncio.to_thread(tracing.flush, stack.settings)
                starts = [s for s in receiver.spans if s.name == "POST /v1/backorders"]
                if not starts:
                    return []
                trace = [s for s in receiver.spans if s.trace_id == starts[0].trace_id]
                names = {s.name for s in trace}
                done = {f"RunActivity:{each}" for each in ACTIVITIES} <= names
                return trace if done else []

            trace = await eventually(traced, what="the start's trace")

    roots = [span for span in trace if not span.parent_id]
    assert [(span.name, span.kind) for span in roots] == [("POST /v1/backorders", SERVER)]
    assert {span.service for span in trace} == {"backorders"}
    # The line's own run (the survey a shipped line starts runs in the same trace).
    (run,) = [span for span in trace if span.name == "RunWorkflow:BackorderLineWorkflow"]
    start = ["POST /v1/backorders", "StartWorkflow:BackorderLineWorkflow"]
    assert chain(trace, run) == [*start, run.name]
    assert run.attributes.get("temporalWorkflowID") == workflow_id
    outside = {span.parent_id: span for span in trace if span.kind == CLIENT}
    calls: dict[str, ReceivedSpan] = {}
    for activity in ACTIVITIES:
        ran = next(span for span in trace if span.name == f"RunActivity:{activity}")
        path = chain(trace, ran)
        # temporalio parents a workflow's spans on the context its start carried: the
        # StartWorkflow span (RunWorkflow is their sibling), or the signal that woke it.
        assert path[:2] == start, path
        assert path[-2] == f"StartActivity:{activity}", path
        calls[activity] = outside[ran.span_id]
    simulator = f"http://127.0.0.1:{stack.settings.simulator_port}"
    assert {activity: call.attributes["http.url"] for activity, call in calls.items()} == {
        "send_message": f"{simulator}/notifications/messages",
        "create_shipment": f"{simulator}/carrier/shipments",
        "capture_payment": f"{simulator}/payments/captures",
    }


OFF_PROBE = """
import sys
from api.app import create_app
from client.backorders import connect
from config import tracing
from config.settings import Settings
from worker.main import worker_for

settings = Settings()
app = create_app(settings)
assert settings.otlp_endpoint is None
assert tracing.provider(settings) is None and tracing.interceptors(settings) == []
assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
print(sorted({name for name in sys.modules if name.startswith(LOADED_WHEN_ON)}))
"""
LOADED_WHEN_ON = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")


async def test_tracing_is_off_by_default_and_loads_nothing_of_the_sdk() -> None:
    """In a process of its own (this one has traced): the API, the client and the worker's
    modules, an app built, and not one module of the SDK, the exporter or the
    instrumentations imported, nor temporalio's interceptor."""
    probe = OFF_PROBE.replace("LOADED_WHEN_ON", repr((*LOADED_WHEN_ON, "temporalio.contrib.open")))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        probe,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "[]"
