"""``python -m <service>``: the one way a Bookify service process starts and stops.

uvicorn turns SIGTERM/SIGINT into a graceful shutdown: the ASGI lifespan stops the broker
(in-flight records finish, their offsets committed) and closes MongoDB. uvicorn then
re-raises the signal; the handler here turns that into a normal exit, so pending spans are
flushed and the exit code is 0.

With ``drain_seconds`` (the gateway's in the chart), SIGTERM first drains: /readyz answers
503 and requests are still served for that long, so a load balancer stops sending before
the listener closes (Kubernetes removes a terminating pod from its Service's endpoints while
the pod is already getting SIGTERM). A second SIGTERM, or SIGINT, stops at once.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TypeVar

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from shared.logging import configure_logging
from shared.settings import ServiceSettings
from shared.telemetry import setup_tracing

S = TypeVar("S", bound=ServiceSettings, contravariant=True)


# The services run on asyncio's own event loop, not uvloop (uvicorn's "auto"). On uvloop, a
# write to a connection the broker has just reset raises RuntimeError where asyncio's loop
# drops it, and aiokafka catches only OSError there (aio-libs/aiokafka#1038): the exception
# killed a client's metadata refresher, and every coordinator lookup and produce retry then
# waited on it forever (tests/chaos/test_kafka_killed.py: a service stopped consuming for
# good after a broker restart, in about one run in four under load). What it costs: some of
# the pipeline's headroom, not the gateway's CPU (see docs/PERFORMANCE.md#the-services-event-loop).
SERVICE_LOOP = "asyncio"


# CPython's collector, set for a server. At the default gen0 threshold (700), a few hundred
# requests in flight are enough to start a collection every few milliseconds; each one
# promotes those requests' objects, so full collections follow, and each full collection
# scans everything the imports and the app built: a fifth of a saturated gateway's CPU, and
# next to none once frozen with a larger gen0 (see docs/PERFORMANCE.md#the-garbage-collector).
# Nearly everything a request allocates is freed by reference counting, so the cycles a
# larger gen0 lets wait are few and small.
GC_THRESHOLDS = (20_000, 20, 100)

# How long requests in flight get once the listener is closed (the chart's
# terminationGracePeriodSeconds covers drain_seconds, this and the lifespan's shutdown).
GRACEFUL_SHUTDOWN_SECONDS = 10


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first SIGTERM drains for ``drain_seconds`` before stopping."""

    def __init__(
        self, config: uvicorn.Config, *, drain_seconds: float, on_drain: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self._on_drain = on_drain
        self._drain: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain_seconds <= 0 or self._drain is not None:
            super().handle_exit(sig, frame)
            return
        self._on_drain()
        # A thread, not the loop: this runs in a signal handler. uvicorn's main loop looks at
        # should_exit every tick, so setting it from there is enough.
        self._drain = threading.Timer(self._drain_seconds, super().handle_exit, (sig, frame))
        self._drain.daemon = True
        self._drain.start()


class AppFactory(Protocol[S]):
    def __call__(self, settings: S, *, tracer_provider: TracerProvider) -> Any: ...


def run_service(settings: S, create_app: AppFactory[S]) -> None:
    """Configure logging and tracing, then serve the service's app until stopped."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    # The process entrypoint is where the environment is read; OTEL_* go to the SDK as is.
    tracer_provider = setup_tracing(settings.service_name, dict(os.environ))
    app = create_app(settings, tracer_provider=tracer_provider)
    gc.freeze()  # what start-up built lives as long as the process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        loop=SERVICE_LOOP,
        log_config=None,  # keep the JSON logging configured above
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = DrainingServer(
        config, drain_seconds=settings.drain_seconds, on_drain=app.state.runtime.drain
    )
    try:
        server.run()
    finally:
        tracer_provider.shutdown()
