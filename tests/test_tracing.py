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
from collections.abc import Iterable

from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config import tracing
from config.settings import Settings
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
    (run,) = [span for span in trace if span.name.startswith("RunWorkflow:")]
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


def test_tracing_is_off_by_default_with_nothing_installed() -> None:
    settings = Settings()
    assert settings.otlp_endpoint is None
    assert tracing.provider(settings) is None
    assert tracing.interceptors(settings) == []
    app = create_app(settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
