"""``python -m booking``: the booking service on uvicorn (see shared.runner)."""

from __future__ import annotations

from booking.app import create_app
from booking.config import BookingSettings
from shared.runner import run_service


def main() -> None:
    settings = BookingSettings()
    run_service(
        settings,
        lambda tracer_provider: create_app(settings, tracer_provider=tracer_provider),
        host=settings.host,
        port=settings.port,
    )


if __name__ == "__main__":
    main()
