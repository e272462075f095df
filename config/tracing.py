"""OpenTelemetry traces over OTLP/HTTP, when `BACKORDERS_OTLP_ENDPOINT` is set.

One start is one trace: the API's server span (FastAPI instrumentation), the Temporal client's
`StartWorkflow` under it and, through the workflow's headers, `RunWorkflow`, each
`StartActivity` / `RunActivity` (temporalio's `TracingInterceptor`, on the client and so on
every worker built from it), and under each activity the HTTP client spans of its calls to the
carrier, the payments processor and the notifications service (httpx instrumentation), which
also carry the trace to them in `traceparent`.

Off, nothing here runs: no interceptor, no instrumentation, and none of OpenTelemetry's SDK is
imported (every import below is inside a function that runs only when tracing is on). The
tracer provider is the process's own, handed to each instrumentation, never installed as the
global one: a library that traces through the global API costs nothing either way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

SERVICE_NAME = "backorders"
"""The service name unless `OTEL_SERVICE_NAME` gives another (one per Deployment, say)."""

TRACES_PATH = "/v1/traces"

_providers: dict[str, TracerProvider] = {}


def provider(settings: Settings) -> TracerProvider | None:
    """This process's tracer provider exporting to the settings' endpoint; None when tracing
    is off. One per endpoint, made on first use, flushed when the process exits."""
    endpoint = settings.otlp_endpoint
    if not endpoint:
        return None
    if endpoint not in _providers:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
        made = TracerProvider(resource=Resource.create(attributes))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
        made.add_span_processor(BatchSpanProcessor(exporter))
        _providers[endpoint] = made
    return _providers[endpoint]


def interceptors(settings: Settings) -> list[Interceptor]:
    """The Temporal client's interceptors: the tracing one when tracing is on, else none."""
    traces = provider(settings)
    if traces is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(traces.get_tracer("backorders.temporal"))]


def instrument_app(app: FastAPI, settings: Settings) -> None:
    """A server span for every request of the API, when tracing is on."""
    traces = provider(settings)
    if traces is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # Probes and scrapes every few seconds would drown the traces of real work.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=traces,
        excluded_urls="/healthz,/metrics",
        exclude_spans=["receive", "send"],
    )


def instrument_http(client: httpx.AsyncClient, settings: Settings) -> None:
    """A client span, and `traceparent`, on every call to an outside service."""
    traces = provider(settings)
    if traces is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=traces)


def flush(settings: Settings, timeout_millis: int = 10_000) -> bool:
    """Export what has been traced so far (tests, and a worker about to stop)."""
    traces = _providers.get(settings.otlp_endpoint or "")
    return True if traces is None else traces.force_flush(timeout_millis)
