"""The HTTP side of the booking process: health, readiness and metrics endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from booking.app import app_for
from booking.bootstrap import BookingService, bootstrap
from booking.config import BookingSettings
from booking.domain import EntryKind


@pytest.fixture
async def service() -> AsyncIterator[BookingService]:
    # Nothing listens on port 9 (discard): the dependencies are down, on purpose.
    settings = BookingSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        mongo_uri="mongodb://127.0.0.1:9/",
        readiness_timeout=0.3,
    )
    built = bootstrap(settings)
    yield built
    await built.close()


@pytest.fixture
async def http(service: BookingService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://booking") as client:
        yield client


async def test_healthz_answers_while_the_dependencies_are_down(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_naming_each_dependency_that_does_not_answer(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unready", "checks": {"kafka": False, "mongo": False}}


async def test_metrics_exposes_the_booking_counters_in_prometheus_text(
    http: httpx.AsyncClient, service: BookingService
) -> None:
    service.metrics.decided(EntryKind.CONFIRMED)
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'bookify_bookings_total{outcome="confirmed"} 1.0' in response.text
    assert 'bookify_bookings_total{outcome="rejected"} 0.0' in response.text
    assert 'bookify_dlq_messages_total{service="booking"} 0.0' in response.text


def test_settings_read_the_booking_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKIFY_BOOKING_PORT", "9101")
    monkeypatch.setenv("BOOKIFY_BOOKING_TOPIC_PREFIX", "x.")
    monkeypatch.setenv("BOOKIFY_BOOKING_DB_NAME", "other")
    monkeypatch.setenv("BOOKIFY_GATEWAY_PORT", "1")
    settings = BookingSettings()
    assert (settings.port, settings.db_name, settings.topics.commands) == (
        9101,
        "other",
        "x.bookify.commands",
    )
    assert (settings.group_id, settings.service_name) == ("bookify-booking", "bookify-booking")
