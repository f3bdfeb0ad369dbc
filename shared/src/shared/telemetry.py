"""Telemetry built once for every process: OpenTelemetry tracing and Prometheus metrics.

Configuration comes from the standard OpenTelemetry environment variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``,
``OTEL_SDK_DISABLED``, ...), which the SDK reads itself, so any collector or test
receiver can be pointed at a running process without code changes.
"""

from __future__ import annotations

from typing import Any

from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.environment_variables import OTEL_SERVICE_NAME
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

from shared.urls import trace_endpoint

# Seconds; from well under a millisecond (in-process work) to tens of seconds (a stuck
# pipeline), dense around the 10-500 ms where this system's SLOs live.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5,
    0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def setup_tracing(service_name: str, env: dict[str, str]) -> TracerProvider:
    """Install the process's tracer provider; export over OTLP/HTTP when an endpoint is set.

    ``env`` is the process environment, passed in so this module reads no globals.
    """
    # OTEL_SERVICE_NAME, when set, wins over the service's own name (the spec's precedence).
    name = env.get(OTEL_SERVICE_NAME) or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if trace_endpoint(env):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if tracing_enabled(provider) and not PymongoInstrumentor().is_instrumented_by_opentelemetry:
        PymongoInstrumentor().instrument(tracer_provider=provider)
    return provider


def tracing_enabled(provider: TracerProvider | None = None) -> bool:
    """False when ``OTEL_SDK_DISABLED=true`` turned the SDK off (``provider``, or the global
    one): its tracers then make no spans, so instrumentation around them is pure cost, which
    each service skips then (see docs/PERFORMANCE.md#tracing-off-without-a-collector)."""
    tracer = (provider or trace.get_tracer_provider()).get_tracer("bookify")
    return not isinstance(tracer, trace.NoOpTracer)


def kafka_middlewares(
    registry: CollectorRegistry, tracer_provider: TracerProvider | None, app_name: str
) -> tuple[Any, ...]:
    """FastStream's own telemetry and Prometheus middlewares: context crosses Kafka in headers."""
    prometheus = KafkaPrometheusMiddleware(registry=registry, app_name=app_name)
    if not tracing_enabled(tracer_provider):
        return (prometheus,)
    return (KafkaTelemetryMiddleware(tracer_provider=tracer_provider), prometheus)


def annotate_span(**attributes: object) -> None:
    """Put ``bookify.<name>`` attributes on the current span (booking id, resource id, ...),
    so a booking's trace can be found by its id in the trace backend."""
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in attributes.items():
            if value is not None:
                span.set_attribute(f"bookify.{name}", str(value))
