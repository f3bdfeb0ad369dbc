"""The gateway as an ASGI app: the public API (/v1) on top of the routes every service shares.

``create_app(settings, *, overrides=None)``: like booking's and consumer's, built on
``bootstrap`` (see :mod:`gateway.bootstrap`); unit tests pass ``overrides=GatewayDeps(...)``
with hand-written fakes, and the lifespan then builds no client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from gateway.bootstrap import GatewayDeps, bootstrap
from gateway.config import GatewaySettings
from gateway.error_handlers import install_gateway_problem_handlers
from gateway.fast_lane import FastLane
from gateway.fault_injection import API_PREFIX, FAULTS_PATH, FaultMiddleware
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware
from gateway.ratelimit import RateLimiter, build_limiter
from gateway.routes import bookings, push, resources
from shared.ops import service_app
from shared.telemetry import tracing_enabled


def create_app(
    settings: GatewaySettings | None = None,
    *,
    overrides: GatewayDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the gateway; ``tracer_provider`` from ``setup_tracing`` (the global one if None)."""
    runtime = bootstrap(settings, overrides=overrides, tracer_provider=tracer_provider)
    settings = runtime.settings
    app = service_app(
        runtime,
        title="Bookify gateway",
        description="Bookify's public API. Errors are RFC 9457 application/problem+json.",
        faults_path=FAULTS_PATH,
        body_limited=True,  # BodyLimitMiddleware (below) answers 413 to a PUT too big
        # A ticket drop is bookings; push's fixed /bookings/events is tried before bookings'
        # /bookings/{booking_id}, which would take it for an invalid id.
        api=(push.router, bookings.router, resources.router),
        api_prefix=API_PREFIX,
    )
    # Opens no connection here: the lifespan does, and closes them.
    limiter = build_limiter(
        settings.rate_limit_storage,
        rate_per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        timeout=settings.rate_limit_timeout_seconds,
        retry_after_error=settings.rate_limit_retry_seconds,
        # The prefix that keeps tenants' topics apart on one broker keeps their counts apart.
        key_prefix=f"{settings.topic_prefix}bookify",
        registry=runtime.registry,
    )
    app.state.limiter = limiter
    app.router.lifespan_context = _with_limiter(
        cast(Lifespan, app.router.lifespan_context), limiter
    )
    install_gateway_problem_handlers(
        app,
        retry_after_seconds=settings.retry_after_seconds,
        stream_retry_after_seconds=settings.push_retry_after_seconds,
    )

    # add_middleware wraps: the last added is the outermost. Metrics see every answer,
    # including the 413s the body limit and the injected faults send before routing; the
    # lane, innermost, takes the hottest fixed-path API routes past FastAPI's routing.
    app.add_middleware(FastLane, routes=(*bookings.LANE, *resources.LANE))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(FaultMiddleware, switch=runtime.faults)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, routes=app.router.routes)
    # One server span per request: the ASGI "receive"/"send" child spans (three more per
    # request, each with its own attributes) tell nothing the server span does not.
    if tracing_enabled(tracer_provider):
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            excluded_urls="/healthz,/readyz,/metrics",
            exclude_spans=["receive", "send"],
        )
    return app


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _with_limiter(lifespan: Lifespan, limiter: RateLimiter) -> Lifespan:
    """``lifespan`` with the limiter ready before the first request and closed after it."""

    @asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with lifespan(app):
                await limiter.start()
                yield
        finally:
            await limiter.close()

    return wrapped
