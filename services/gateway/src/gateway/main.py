"""The gateway's composition root: ``create_app(settings)`` builds the FastAPI app.

Clients (MongoDB, the Kafka broker) are created in the lifespan, never at import.
Unit tests pass ``deps=GatewayDeps(...)`` with hand-written fakes; the lifespan then
builds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from gateway.adapters import (
    KafkaCommandPublisher,
    MongoAcceptedStore,
    MongoIdempotencyStore,
    MongoViewReader,
    mongo_ping,
)
from gateway.config import GatewaySettings
from gateway.faults import FaultMiddleware
from gateway.faults import router as faults_router
from gateway.middleware import BodyLimitMiddleware, HttpMetrics, MetricsMiddleware
from gateway.problem import install_problem_handlers, use_problem_media_type
from gateway.ratelimit import TokenBucketLimiter
from gateway.routes import bookings, health, resources
from gateway.service import GatewayDeps
from shared.faults import FaultSwitch
from shared.kafka import ensure_topics, make_broker
from shared.logging import get_logger
from shared.mongo import make_mongo_client

log = get_logger(__name__)

API_PREFIX = "/v1"


async def _ensure_topics(settings: GatewaySettings) -> None:
    try:
        async with asyncio.timeout(settings.kafka_connect_timeout_seconds):
            await ensure_topics(settings)
    except Exception as exc:  # the broker may auto-create; never block startup on this
        log.warning("could not ensure topics", error=f"{type(exc).__name__}: {exc}")


@asynccontextmanager
async def _real_dependencies(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider | None,
) -> AsyncIterator[GatewayDeps]:
    async with AsyncExitStack() as stack:
        mongo = make_mongo_client(settings.mongo_uri)  # connects lazily: no startup hang
        stack.push_async_callback(mongo.close)
        publisher = KafkaCommandPublisher(
            make_broker(settings, registry=registry, tracer_provider=tracer_provider),
            topic=settings.topics.commands,
            source=settings.ce_source,
            publish_timeout=settings.publish_timeout_seconds,
            connect_timeout=settings.kafka_connect_timeout_seconds,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            on_connect=partial(_ensure_topics, settings),
        )
        stack.push_async_callback(publisher.close)
        # Kafka down at startup must not stop the gateway: it starts, /readyz says 503,
        # writes answer 503, and the next publish or probe reconnects.
        if not await publisher.connect():
            log.warning("starting without Kafka", servers=settings.kafka_bootstrap_servers)
        yield GatewayDeps(
            publisher=publisher,
            views=MongoViewReader(mongo[settings.views_db]),
            accepted=MongoAcceptedStore(mongo[settings.db_name]),
            idempotency=MongoIdempotencyStore(mongo[settings.db_name]),
            readiness={"mongodb": partial(mongo_ping, mongo), "kafka": publisher.ping},
            idempotency_wait_seconds=settings.idempotency_wait_seconds,
        )


def create_app(
    settings: GatewaySettings | None = None,
    *,
    deps: GatewayDeps | None = None,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the gateway.

    ``deps``: use these adapters instead of building MongoDB/Kafka clients (unit tests).
    ``registry``: the app's own Prometheus registry (a fresh one by default).
    ``tracer_provider``: from ``setup_tracing`` in the entrypoint; the global one if None.
    """
    settings = settings or GatewaySettings()
    registry = registry if registry is not None else CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if deps is not None:
            app.state.deps = deps
            yield
            return
        async with _real_dependencies(settings, registry, tracer_provider) as real:
            app.state.deps = real
            yield

    app = FastAPI(
        title="Bookify gateway",
        version="1.0.0",
        description="Bookify's public API. Errors are RFC 9457 application/problem+json.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.limiter = TokenBucketLimiter(
        settings.rate_limit_per_second, settings.rate_limit_burst
    )
    # Off by default; only dev and test can switch it on (PUT /v1/admin/faults).
    app.state.faults = FaultSwitch(settings.environment)

    install_problem_handlers(app, retry_after_seconds=settings.retry_after_seconds)
    app.include_router(resources.router, prefix=API_PREFIX)
    app.include_router(bookings.router, prefix=API_PREFIX)
    app.include_router(faults_router, prefix=API_PREFIX)
    app.include_router(health.router)
    use_problem_media_type(app)

    # add_middleware wraps: the last added is the outermost. Metrics see every answer,
    # including the 413s the body limit and the injected faults send before routing.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(FaultMiddleware, switch=app.state.faults)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry), routes=app.router.routes)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, excluded_urls="/healthz,/readyz,/metrics"
    )
    return app
