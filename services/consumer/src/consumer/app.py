"""The consumer as an ASGI app: FastStream runs the subscriber, three plain routes beside it.

- ``/healthz``: the process is up (no dependency is touched).
- ``/readyz``: Kafka and Mongo both answer; 503 with the failing check otherwise.
- ``/metrics``: this app's registry, in OpenMetrics when asked for (that is the format
  that carries the e2e histogram's trace exemplars), else Prometheus text.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.response import JSONResponse
from faststream.asgi.types import Scope
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.exposition import choose_encoder

from consumer.bootstrap import Runtime, build, running
from consumer.config import ConsumerSettings
from shared.faults import ADMIN_PATH, FaultsAdminApp


def create_app(
    settings: ConsumerSettings | None = None, *, tracer_provider: TracerProvider | None = None
) -> AsgiFastStream:
    runtime = build(settings or ConsumerSettings(), tracer_provider=tracer_provider)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with running(runtime):
            yield

    return AsgiFastStream(
        runtime.broker,
        asgi_routes=[
            ("/healthz", _healthz()),
            ("/readyz", _readyz(runtime)),
            ("/metrics", _metrics(runtime)),
            (ADMIN_PATH, FaultsAdminApp(runtime.faults)),
        ],
        lifespan=lifespan,
        # Through the root logger, so app lifecycle lines are JSON like everything else.
        logger=logging.getLogger("consumer.app"),
    )


def _healthz() -> GetHandler:
    @get(include_in_schema=False)
    async def healthz(scope: Scope) -> AsgiResponse:
        return JSONResponse({"status": "ok"})

    return healthz


def _readyz(runtime: Runtime) -> GetHandler:
    @get(include_in_schema=False)
    async def readyz(scope: Scope) -> AsgiResponse:
        checks = await runtime.readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    return readyz


def _metrics(runtime: Runtime) -> GetHandler:
    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        accept = ", ".join(
            value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"
        )
        encoder, content_type = choose_encoder(accept)
        return AsgiResponse(encoder(runtime.registry), 200, {"content-type": content_type})

    return metrics
