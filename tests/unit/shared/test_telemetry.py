"""Tracing switched off (OTEL_SDK_DISABLED) installs no tracing instrumentation at all."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from shared.telemetry import kafka_middlewares, tracing_enabled
from shared.urls import trace_endpoint
from tests.unit.gateway.conftest import settings
from tests.unit.gateway.fakes import Fakes


def providers(monkeypatch: pytest.MonkeyPatch) -> tuple[TracerProvider, TracerProvider]:
    """(off, on): the SDK reads OTEL_SDK_DISABLED when a provider is made."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    off = TracerProvider()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    return off, TracerProvider()


def test_a_disabled_sdk_gets_no_kafka_telemetry_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    off, on = providers(monkeypatch)

    assert not tracing_enabled(off)
    assert tracing_enabled(on)
    names = {
        p: [type(m).__name__ for m in kafka_middlewares(CollectorRegistry(), p, "svc")]
        for p in (off, on)
    }
    assert names[off] == ["KafkaPrometheusMiddleware"]  # metrics stay
    assert names[on] == ["KafkaTelemetryMiddleware", "KafkaPrometheusMiddleware"]


def test_a_disabled_sdk_leaves_the_gateway_uninstrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    off, on = providers(monkeypatch)

    untraced = create_app(settings(), overrides=Fakes().deps(), tracer_provider=off)
    traced = create_app(settings(), overrides=Fakes().deps(), tracer_provider=on)

    assert not getattr(untraced, "_is_instrumented_by_opentelemetry", False)
    assert getattr(traced, "_is_instrumented_by_opentelemetry", False)


def test_the_trace_endpoint_is_the_traces_one_first() -> None:
    assert trace_endpoint({}) is None
    assert trace_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318"
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces",
    }
    assert trace_endpoint(both) == "http://t:4318/v1/traces"
