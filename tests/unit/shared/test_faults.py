"""Fault injection: the switch, its dice, its refusal in prod, and the gateway's middleware.

The operators' endpoint every service shares is tested in test_ops.py."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.fault_injection import FaultMiddleware
from shared.faults import (
    OFF,
    FaultSettings,
    FaultsRefusedError,
    FaultSwitch,
    InjectedFaultError,
    InjectedPoisonError,
)
from shared.kafka import FaultyHandler
from tests.support.clock import FakeClock

ASGIMessage = dict[str, Any]


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def switch(environment: str = "test", seed: int = 1) -> tuple[FaultSwitch, FakeSleep]:
    sleep = FakeSleep()
    return FaultSwitch(environment, rng=random.Random(seed), sleep=sleep), sleep


class Msg:
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id


# ---------------------------------------------------------------- settings and switch
def test_a_new_switch_is_off() -> None:
    faults, _ = switch()
    assert faults.settings == OFF
    assert not faults.settings.active


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"latency_ms": -1},
        {"latency_ms": 60_000},
        {"poison_rate": 2},
        {"error_status": 404},
        {"surprise": 1},
    ],
)
def test_fault_settings_reject_values_outside_their_range(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FaultSettings.model_validate(bad)


def test_prod_refuses_to_switch_faults_on() -> None:
    faults, _ = switch("prod")
    assert not faults.allowed
    with pytest.raises(FaultsRefusedError, match="prod"):
        faults.update(FaultSettings(latency_ms=100))
    assert faults.settings == OFF


def test_prod_may_still_be_told_to_stay_off() -> None:
    faults, _ = switch("prod")
    assert faults.update(OFF) == OFF


@pytest.mark.parametrize("environment", ["dev", "test"])
def test_dev_and_test_switch_faults_on_and_off(environment: str) -> None:
    faults, _ = switch(environment)
    faults.update(FaultSettings(error_rate=0.5))
    assert faults.settings.error_rate == 0.5
    faults.update(OFF)
    assert faults.settings == OFF


def test_error_rate_decides_roughly_that_share_of_rolls() -> None:
    faults, _ = switch(seed=7)
    faults.update(FaultSettings(error_rate=0.2))
    hits = sum(faults.roll_error() for _ in range(10_000))
    assert 1_800 < hits < 2_200
    assert faults.injected["error"] == hits


def test_error_rates_zero_and_one_are_never_and_always() -> None:
    faults, _ = switch()
    assert not any(faults.roll_error() for _ in range(1000))
    faults.update(FaultSettings(error_rate=1.0))
    assert all(faults.roll_error() for _ in range(1000))


def test_poison_is_decided_by_the_message_id_so_every_attempt_fails_alike() -> None:
    faults, _ = switch()
    faults.update(FaultSettings(poison_rate=0.3))
    ids = [f"msg-{i}" for i in range(2000)]
    first = [faults.is_poison(i) for i in ids]
    again = [faults.is_poison(i) for i in ids]
    assert first == again
    assert 450 < sum(first) < 750


async def test_a_poison_message_fails_on_every_attempt() -> None:
    faults, _ = switch()
    faults.update(FaultSettings(poison_rate=1.0))
    for _ in range(3):
        with pytest.raises(InjectedPoisonError):
            await faults.before_handling("the-same-id")


async def test_an_injected_transient_error_is_not_a_poison() -> None:
    faults, _ = switch()
    faults.update(FaultSettings(error_rate=1.0))
    with pytest.raises(InjectedFaultError) as caught:
        await faults.before_handling("id")
    assert not isinstance(caught.value, InjectedPoisonError)


class Recorder:
    """A batch handler that notes the ids it is handed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, message: Any) -> None:
        self.seen.append(message.message_id)

    async def many(self, deliveries: Any) -> None:
        self.seen.extend(d.message.message_id for d in deliveries)

    async def settle(self, message: Any, error: BaseException) -> None:
        self.seen.append(f"settled {message.message_id}")


async def test_latency_is_added_before_the_handler() -> None:
    faults, sleep = switch()
    faults.update(FaultSettings(latency_ms=150))
    handler = Recorder()

    await FaultyHandler(handler, faults)(Msg("a"))  # type: ignore[arg-type]
    assert sleep.calls == [0.15]
    assert handler.seen == ["a"]


async def test_the_handler_runs_untouched_while_faults_are_off() -> None:
    faults, sleep = switch()
    handler = Recorder()

    faulty = FaultyHandler(handler, faults)  # type: ignore[arg-type]
    for i in range(50):
        await faulty(Msg(str(i)))
    await faulty.many([SimpleNamespace(message=Msg(str(i))) for i in range(50, 60)])
    assert len(handler.seen) == 60
    assert sleep.calls == []


async def test_a_poison_in_a_batch_fails_the_whole_batch_before_the_handler() -> None:
    faults, _ = switch()
    faults.update(FaultSettings(poison_rate=1.0))
    handler = Recorder()

    with pytest.raises(InjectedPoisonError):
        await FaultyHandler(handler, faults).many([SimpleNamespace(message=Msg("x"))])  # type: ignore[arg-type, list-item]
    assert handler.seen == []


def test_the_kill_point_is_part_of_the_settings_and_off_by_default() -> None:
    assert OFF.kill_at is None
    assert FaultSettings(kill_at="after_append").active
    with pytest.raises(ValidationError):
        FaultSettings(kill_at="somewhere_else")  # type: ignore[arg-type]


# ---------------------------------------------------------------- gateway middleware
class Downstream:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def through(middleware: FaultMiddleware, path: str) -> int:
    sent: list[ASGIMessage] = []

    async def receive() -> ASGIMessage:
        return {"type": "http.request", "body": b""}

    async def send(message: ASGIMessage) -> None:
        sent.append(message)

    await middleware({"type": "http", "path": path, "method": "GET"}, receive, send)
    return int(sent[0]["status"])


async def test_the_gateway_answers_injected_errors_with_the_configured_status() -> None:
    faults, sleep = switch()
    downstream = Downstream()
    middleware = FaultMiddleware(downstream, faults)
    faults.update(FaultSettings(error_rate=1.0, error_status=500, latency_ms=150))
    assert await through(middleware, "/v1/resources") == 500
    assert sleep.calls == [0.15]
    assert downstream.calls == 0


async def test_the_gateway_never_faults_health_metrics_or_the_switch_itself() -> None:
    faults, _ = switch()
    downstream = Downstream()
    middleware = FaultMiddleware(downstream, faults)
    faults.update(FaultSettings(error_rate=1.0))
    for path in ("/healthz", "/readyz", "/metrics", "/v1/admin/faults"):
        assert await through(middleware, path) == 200
    assert await through(middleware, "/v1/bookings") == 503


def test_faults_switch_themselves_off_when_their_duration_runs_out() -> None:
    clock = FakeClock()
    faults = FaultSwitch("test", clock=clock.monotonic)
    faults.update(FaultSettings(latency_ms=30_000, error_rate=1.0, duration_seconds=60))

    clock.advance(59)
    assert faults.settings.latency_ms == 30_000
    assert faults.state()["expires_in_seconds"] == pytest.approx(1)
    assert faults.roll_error()

    clock.advance(1)
    assert faults.settings == OFF
    assert not faults.roll_error()
    assert faults.latency_s() == 0
    assert faults.state()["expires_in_seconds"] == 0


def test_a_fault_setting_always_has_a_bounded_duration() -> None:
    assert FaultSettings().duration_seconds == 300
    with pytest.raises(ValidationError):
        FaultSettings(error_rate=1.0, duration_seconds=86_400)


async def test_the_last_resort_is_never_poisoned() -> None:
    faults, _ = switch()
    faults.update(FaultSettings(poison_rate=1, error_rate=1))
    handler = Recorder()
    faulty = FaultyHandler(handler, faults)
    with pytest.raises(InjectedPoisonError):
        await faulty(Msg("a"))  # type: ignore[arg-type]

    await faulty.settle(Msg("a"), InjectedPoisonError("poison"))  # type: ignore[arg-type]
    assert handler.seen == ["settled a"]
