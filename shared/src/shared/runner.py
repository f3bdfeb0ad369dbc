"""``python -m <service>``: the one way a Bookify service process starts and stops.

uvicorn turns SIGTERM/SIGINT into a graceful shutdown: the ASGI lifespan stops the broker
(in-flight records finish, their offsets committed) and closes MongoDB. uvicorn then
re-raises the signal; the handler here turns that into a normal exit, so pending spans are
flushed and the exit code is 0.
"""

from __future__ import annotations

import gc
import os
import signal
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


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


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
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            lifespan="on",
            loop=SERVICE_LOOP,
            log_config=None,  # keep the JSON logging configured above
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        tracer_provider.shutdown()
