"""``python -m booking``: the booking service on uvicorn.

uvicorn turns SIGTERM/SIGINT into a graceful shutdown: the ASGI lifespan stops the broker
(in-flight records finish within FastStream's graceful timeout, their offsets committed),
then closes MongoDB; tracing is flushed last.
"""

from __future__ import annotations

import os

import uvicorn

from booking.app import create_app
from booking.config import BookingSettings
from shared.logging import configure_logging
from shared.telemetry import setup_tracing


def main() -> None:
    settings = BookingSettings()
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    tracer_provider = setup_tracing(settings.service_name, dict(os.environ))
    app = create_app(settings, tracer_provider=tracer_provider)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            lifespan="on",
            log_config=None,  # keep the JSON logging configured above
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        tracer_provider.shutdown()


if __name__ == "__main__":
    main()
