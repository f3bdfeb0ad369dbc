"""``python -m <service>``: how shared.runner serves a service's app."""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from shared import runner
from shared.settings import ServiceSettings


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What run_service did, in order; nothing is served, and the process is left as is."""
    done: list[Any] = []
    monkeypatch.setattr(
        runner.DrainingServer,
        "run",
        lambda server, sockets=None: done.append(("run", server.config.app, server.config)),
    )
    monkeypatch.setattr(runner.signal, "signal", lambda *_: None)  # pytest keeps its handlers
    monkeypatch.setattr(runner, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(runner, "setup_tracing", lambda *_: TracerProvider())
    # Recorded, not done: freezing pytest's own heap would outlive the test.
    monkeypatch.setattr(runner.gc, "freeze", lambda: done.append("freeze"))
    monkeypatch.setattr(runner.gc, "set_threshold", lambda *t: done.append(("threshold", t)))
    return done


class Runtime:
    def __init__(self) -> None:
        self.drained = 0

    def drain(self) -> None:
        self.drained += 1


class App:
    """What run_service needs of a service's app: its runtime (shared.ops.service_app)."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(runtime=Runtime())


APP = App()


def create_app(settings: ServiceSettings, *, tracer_provider: TracerProvider) -> object:
    return APP


def test_a_service_is_served_on_the_loop_that_survives_a_broker_reset(calls: list[Any]) -> None:
    # tests/integration/test_service_loop.py shows why this loop and not uvloop.
    runner.run_service(ServiceSettings(), create_app)

    [(_, _, config)] = [call for call in calls if call[0] == "run"]
    assert config.loop == runner.SERVICE_LOOP == "asyncio"


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


def draining_server(drain_seconds: float, runtime: Runtime) -> runner.DrainingServer:
    config = uvicorn.Config(APP)
    return runner.DrainingServer(config, drain_seconds=drain_seconds, on_drain=runtime.drain)


def test_the_first_sigterm_drains_before_the_server_stops() -> None:
    runtime = Runtime()
    server = draining_server(0.05, runtime)

    server.handle_exit(signal.SIGTERM, None)
    assert runtime.drained == 1
    assert not server.should_exit  # still serving, /readyz says 503
    for _ in range(200):  # the drain period passes
        if server.should_exit:
            break
        time.sleep(0.01)
    assert server.should_exit
    assert runtime.drained == 1


@pytest.mark.parametrize(
    ("drain_seconds", "signals"),
    [(60.0, [signal.SIGINT]), (60.0, [signal.SIGTERM, signal.SIGTERM]), (0.0, [signal.SIGTERM])],
    ids=["ctrl-c", "second-sigterm", "no-drain"],
)
def test_stopping_at_once(drain_seconds: float, signals: list[signal.Signals]) -> None:
    server = draining_server(drain_seconds, Runtime())
    for sig in signals:
        server.handle_exit(sig, None)
    assert server.should_exit
