"""``python -m gateway``: logging, tracing, then uvicorn."""

from __future__ import annotations

import os

import uvicorn

from gateway.config import GatewaySettings
from gateway.main import create_app
from shared.logging import configure_logging
from shared.telemetry import setup_tracing


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    provider = setup_tracing(settings.service_name, dict(os.environ))
    app = create_app(settings, tracer_provider=provider)
    try:
        # log_config=None: keep our structlog JSON handler for uvicorn's loggers too.
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
