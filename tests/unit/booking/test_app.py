"""The HTTP side of the booking process: health, readiness and metrics endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from booking.app import create_app
from booking.bootstrap import BookingDeps, BookingRuntime
from booking.config import BookingSettings
from booking.domain import EntryKind
from tests.unit.booking.fakes import FakeLedger, FakePublisher


async def down() -> bool:
    raise ConnectionError("nothing listens there")


@pytest.fixture
async def app() -> FastAPI:
    deps = BookingDeps(
        ledger=FakeLedger(),
        publisher=FakePublisher(),
        readiness={"kafka": down, "mongodb": down},
    )
    return create_app(BookingSettings(readiness_timeout_seconds=0.3), overrides=deps)


@pytest.fixture
def runtime(app: FastAPI) -> BookingRuntime:
    runtime: BookingRuntime = app.state.runtime
    return runtime


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://booking"
        ) as client,
    ):
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
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["checks"] == {"kafka": False, "mongodb": False}
    assert body["detail"] == "not ready: kafka, mongodb unreachable"


async def test_metrics_exposes_the_booking_counters_in_prometheus_text(
    http: httpx.AsyncClient, runtime: BookingRuntime
) -> None:
    runtime.metrics.decided(EntryKind.CONFIRMED)
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
