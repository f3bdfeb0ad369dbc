"""``python -m <service>``: how shared.runner serves a service's app."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared import runner
from shared.settings import ServiceSettings


def test_a_service_is_served_on_the_loop_that_survives_a_broker_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tests/integration/test_service_loop.py shows why this loop and not uvloop.
    served: dict[str, Any] = {}
    monkeypatch.setattr(runner.uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setattr(runner.signal, "signal", lambda *_: None)  # pytest keeps its handlers
    monkeypatch.setattr(runner, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(runner, "setup_tracing", lambda *_: TracerProvider())

    runner.run_service(ServiceSettings(), lambda settings, *, tracer_provider: object())

    assert served["loop"] == runner.SERVICE_LOOP == "asyncio"
