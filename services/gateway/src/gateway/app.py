"""The gateway as an ASGI app: the public API (/v1) on top of the routes every service shares.

``create_app(settings, *, overrides=None)``: like booking's and consumer's, built on
``bootstrap`` (see :mod:`gateway.bootstrap`); unit tests pass ``overrides=GatewayDeps(...)``
with hand-written fakes, and the lifespan then builds no client.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from gateway.bootstrap import bootstrap
from gateway.config import GatewaySettings
from gateway.faults import API_PREFIX, FAULTS_PATH, FaultMiddleware
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware
from gateway.problem import install_gateway_problem_handlers
from gateway.ratelimit import TokenBucketLimiter
from gateway.routes import bookings, resources
from gateway.service import GatewayDeps
from shared.ops import service_app


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
    )
    app.state.limiter = TokenBucketLimiter(
        settings.rate_limit_per_second, settings.rate_limit_burst
    )
    install_gateway_problem_handlers(app, retry_after_seconds=settings.retry_after_seconds)
    app.include_router(resources.router, prefix=API_PREFIX)
    app.include_router(bookings.router, prefix=API_PREFIX)

    # add_middleware wraps: the last added is the outermost. Metrics see every answer,
    # including the 413s the body limit and the injected faults send before routing.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(FaultMiddleware, switch=runtime.faults)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, routes=app.router.routes)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, excluded_urls="/healthz,/readyz,/metrics"
    )
    return app
