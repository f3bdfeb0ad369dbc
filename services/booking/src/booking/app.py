"""The booking process as an ASGI app: the Kafka subscriber plus /healthz, /readyz, /metrics."""

from __future__ import annotations

import json
import logging

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.types import Scope
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from booking.bootstrap import BookingService, bootstrap
from booking.config import BookingSettings
from booking.subscribers import register_subscribers
from shared.faults import ADMIN_PATH, FaultsAdminApp


def create_app(
    settings: BookingSettings | None = None, *, tracer_provider: TracerProvider | None = None
) -> AsgiFastStream:
    return app_for(bootstrap(settings, tracer_provider=tracer_provider))


def app_for(service: BookingService) -> AsgiFastStream:
    register_subscribers(
        service.broker, service.settings, service.subscribed_handler, service.metrics
    )
    return AsgiFastStream(
        service.broker,
        asgi_routes=[
            ("/healthz", healthz),
            (ADMIN_PATH, FaultsAdminApp(service.faults)),
            ("/readyz", readyz(service)),
            ("/metrics", metrics(service.registry)),
        ],
        # A stdlib logger propagates to the root handler, so lifecycle lines are JSON too.
        logger=logging.getLogger("booking.app"),
        on_startup=[service.start],
        # After the broker stopped, so in-flight handlers still had their database.
        after_shutdown=[service.close],
    )


def _json(data: object, status: int = 200) -> AsgiResponse:
    return AsgiResponse(json.dumps(data).encode(), status, {"Content-Type": "application/json"})


@get(include_in_schema=False)
async def healthz(scope: Scope) -> AsgiResponse:
    """The process is up (it says nothing about its dependencies)."""
    return _json({"status": "ok"})


def readyz(service: BookingService) -> GetHandler:
    @get(include_in_schema=False)
    async def probe(scope: Scope) -> AsgiResponse:
        """Kafka and MongoDB both answer."""
        checks = await service.readiness()
        ready = all(checks.values())
        return _json(
            {"status": "ready" if ready else "unready", "checks": checks}, 200 if ready else 503
        )

    return probe


def metrics(registry: CollectorRegistry) -> GetHandler:
    @get(include_in_schema=False)
    async def exposition(scope: Scope) -> AsgiResponse:
        return AsgiResponse(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    return exposition
