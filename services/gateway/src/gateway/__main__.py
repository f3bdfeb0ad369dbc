"""``python -m gateway``: the gateway service on uvicorn (see shared.runner)."""

from __future__ import annotations

from gateway.config import GatewaySettings
from gateway.main import create_app
from shared.runner import run_service


def main() -> None:
    settings = GatewaySettings()
    run_service(
        settings,
        lambda tracer_provider: create_app(settings, tracer_provider=tracer_provider),
        host=settings.host,
        port=settings.port,
    )


if __name__ == "__main__":
    main()
