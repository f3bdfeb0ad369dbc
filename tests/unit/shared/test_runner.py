"""``python -m <service>``: how shared.runner serves a service's app."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared import runner
from shared.settings import ServiceSettings


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What run_service did, in order; nothing is served, and the process is left as is."""
    done: list[Any] = []
    monkeypatch.setattr(
        runner.uvicorn, "run", lambda app, **options: done.append(("run", app, options))
    )
    monkeypatch.setattr(runner.signal, "signal", lambda *_: None)  # pytest keeps its handlers
    monkeypatch.setattr(runner, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(runner, "setup_tracing", lambda *_: TracerProvider())
    # Recorded, not done: freezing pytest's own heap would outlive the test.
    monkeypatch.setattr(runner.gc, "freeze", lambda: done.append("freeze"))
    monkeypatch.setattr(runner.gc, "set_threshold", lambda *t: done.append(("threshold", t)))
    return done


APP = object()


def create_app(settings: ServiceSettings, *, tracer_provider: TracerProvider) -> object:
    return APP


def test_a_service_is_served_on_the_loop_that_survives_a_broker_reset(calls: list[Any]) -> None:
    # tests/integration/test_service_loop.py shows why this loop and not uvloop.
    runner.run_service(ServiceSettings(), create_app)

    [(_, _, options)] = [call for call in calls if call[0] == "run"]
    assert options["loop"] == runner.SERVICE_LOOP == "asyncio"


def test_the_collector_is_set_for_a_server_once_the_app_is_built(calls: list[Any]) -> None:
    def recorded(settings: ServiceSettings, *, tracer_provider: TracerProvider) -> object:
        calls.append("create_app")
        return APP

    runner.run_service(ServiceSettings(), recorded)

    assert [call if isinstance(call, str) else call[:2] for call in calls] == [
        "create_app",
        "freeze",  # the app is built: it lives as long as the process
        ("threshold", runner.GC_THRESHOLDS),
        ("run", APP),
    ]
    assert runner.GC_THRESHOLDS[0] > 700  # CPython's default gen0 threshold
