"""``python -m consumer``: the consumer service on uvicorn (see shared.runner)."""

from __future__ import annotations

from consumer.app import create_app
from consumer.config import ConsumerSettings
from shared.runner import run_service


def main() -> None:
    settings = ConsumerSettings()
    run_service(
        settings,
        lambda tracer_provider: create_app(settings, tracer_provider=tracer_provider),
        host=settings.host,
        port=settings.port,
    )


if __name__ == "__main__":
    main()
