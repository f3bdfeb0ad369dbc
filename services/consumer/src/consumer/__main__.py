"""``python -m consumer``: logging, tracing, then the ASGI app under uvicorn."""

from __future__ import annotations

import os

import uvicorn

from consumer.app import create_app
from consumer.config import ConsumerSettings
from shared.logging import configure_logging
from shared.telemetry import setup_tracing


def main() -> None:
    settings = ConsumerSettings()
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    # The process entrypoint is where the environment is read; OTEL_* go to the SDK as is.
    provider = setup_tracing(settings.service_name, dict(os.environ))
    try:
        uvicorn.run(
            create_app(settings, tracer_provider=provider),
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep the JSON logging configured above
            lifespan="on",
        )
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
