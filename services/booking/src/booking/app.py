"""The booking process as an ASGI app: the commands subscriber plus the shared ops routes."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from booking.bootstrap import BookingDeps, bootstrap
from booking.config import BookingSettings
from shared.ops import service_app


def create_app(
    settings: BookingSettings | None = None,
    *,
    overrides: BookingDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    runtime = bootstrap(settings, overrides=overrides, tracer_provider=tracer_provider)
    return service_app(
        runtime,
        title="Bookify booking",
        description="Decides booking commands against the ledger; operations endpoints only.",
    )
