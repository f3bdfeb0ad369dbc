"""The consumer process as an ASGI app: the events subscriber plus the shared ops routes."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from consumer.bootstrap import ConsumerDeps, bootstrap
from consumer.config import ConsumerSettings
from shared.ops import service_app


def create_app(
    settings: ConsumerSettings | None = None,
    *,
    overrides: ConsumerDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    runtime = bootstrap(settings, overrides=overrides, tracer_provider=tracer_provider)
    return service_app(
        runtime,
        title="Bookify consumer",
        description="Projects booking events into the read model; operations endpoints only.",
    )
