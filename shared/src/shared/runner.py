"""``python -m <service>``: the one way a Bookify service process starts and stops.

uvicorn turns SIGTERM/SIGINT into a graceful shutdown: the ASGI lifespan stops the broker
(in-flight records finish, their offsets committed) and closes MongoDB. uvicorn then
re-raises the signal; the handler here turns that into a normal exit, so pending spans are
flushed and the exit code is 0.
"""

from __future__ import annotations

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
    try:
        uvicorn.run(
            create_app(settings, tracer_provider=tracer_provider),
            host=settings.host,
            port=settings.port,
            lifespan="on",
            log_config=None,  # keep the JSON logging configured above
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        tracer_provider.shutdown()
