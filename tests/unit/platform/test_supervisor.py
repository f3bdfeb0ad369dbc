"""`bookify up`'s restart policy and supervisor, on a fake clock and fake processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bookify_platform.infra.errors import PortInUseError
from bookify_platform.supervisor import (
    CrashHistory,
    CrashLoopError,
    RestartPolicy,
    Supervisor,
    describe_exit,
)

POLICY = RestartPolicy()  # 1 s doubling to 30 s, reset after 60 s up, 5 crashes in 300 s


# ---------------------------------------------------------------- the pure policy


def test_delays_double_from_one_second_and_stop_at_the_cap():
    assert [POLICY.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert POLICY.delay(10_000) == 30  # no overflow however long the streak


def test_quick_crashes_back_off_and_the_fifth_within_the_window_gives_up():
    history = CrashHistory(POLICY)
    now, verdicts = 0.0, []
    for _ in range(5):
        started = now
        now += 2  # it dies two seconds after each start
        verdict = history.crashed(started_at=started, now=now)
        verdicts.append(verdict)
        now += verdict.delay

    assert [v.delay for v in verdicts[:4]] == [1, 2, 4, 8]
    assert [v.attempt for v in verdicts] == [1, 2, 3, 4, 5]
    assert [v.give_up for v in verdicts] == [False, False, False, False, True]
    assert verdicts[-1].recent == 5


def test_a_process_that_stayed_up_long_enough_starts_a_new_streak():
    history = CrashHistory(POLICY)
    history.crashed(started_at=0, now=1)
    history.crashed(started_at=2, now=3)

    almost = history.crashed(started_at=10, now=10 + POLICY.reset_after - 0.1)
    long_run = history.crashed(started_at=100, now=100 + POLICY.reset_after)

    assert almost.delay == 4  # just short of the reset: the streak goes on
    assert (long_run.attempt, long_run.delay) == (1, 1)


def test_crashes_spread_wider_than_the_window_never_give_up():
    history = CrashHistory(POLICY)
    verdicts = [
        history.crashed(started_at=i * 100.0, now=i * 100.0 + 61) for i in range(20)
    ]  # one crash every 100 s, each after 61 s up

    assert not any(v.give_up for v in verdicts)
    assert max(v.recent for v in verdicts) == 3  # 300 s hold at most three of them
    assert {v.delay for v in verdicts} == {1}


def test_a_policy_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="max_delay"):
        RestartPolicy(first_delay=10, max_delay=5)
    with pytest.raises(ValueError, match="max_crashes"):
        RestartPolicy(max_crashes=0)


@pytest.mark.parametrize(
    ("code", "text"),
    [(1, "exit code 1"), (0, "exit code 0"), (-signal.SIGKILL, "signal SIGKILL")],
)
def test_an_exit_is_described_as_a_code_or_a_signal(code, text):
    assert describe_exit(code) == text


# ---------------------------------------------------------------- the supervisor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeService:
    """A process that exits when told to; restart() gives it a new pid."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log_path.write_text("starting\nValueError: no such topic\n")
        self.pid: int | None = 100
        self.code: int | None = None
        self.ready = True
        self.restart_reasons: list[str] = []
        self.start_error: Exception | None = None

    def poll(self) -> int | None:
        return self.code

    def restart(self, reason: str) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.restart_reasons.append(reason)
        self.pid = (self.pid or 0) + 1
        self.code = None

    def is_ready(self) -> bool:
        return self.ready


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(tmp_path: Path) -> dict[str, FakeService]:
    return {n: FakeService(n, tmp_path) for n in ("booking", "consumer", "gateway")}


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def supervisor(services: dict[str, FakeService], clock: FakeClock, lines: list[str]) -> Supervisor:
    return Supervisor(services.values(), POLICY, report=lines.append, clock=clock)


def test_running_services_are_left_alone(supervisor, services, clock, lines):
    for _ in range(3):
        clock.now += 10
        supervisor.poll()

    assert all(s.restart_reasons == [] for s in services.values())
    assert lines == []


def test_a_killed_service_is_restarted_after_the_backoff_and_the_restart_is_one_line(
    supervisor, services, clock, lines
):
    consumer = services["consumer"]
    consumer.code = -signal.SIGKILL
    clock.now += 5
    supervisor.poll()

    assert len(lines) == 1
    line = lines[0]
    for expected in ("consumer", "signal SIGKILL", "restart 1", "in 1 s", str(consumer.log_path)):
        assert expected in line
    assert consumer.restart_reasons == []  # not before the delay

    clock.now += 0.9
    supervisor.poll()
    assert consumer.restart_reasons == []

    clock.now += 0.1
    supervisor.poll()
    assert consumer.restart_reasons == ["it stopped (signal SIGKILL)"]
    assert consumer.pid == 101
    assert lines[-1] == "consumer restarted (pid 101)"
    assert services["booking"].restart_reasons == services["gateway"].restart_reasons == []


def test_readiness_after_a_restart_is_reported_once(supervisor, services, clock, lines):
    gateway = services["gateway"]
    gateway.code, gateway.ready = 1, False
    supervisor.poll()
    clock.now += 1
    supervisor.poll()  # restarted, not ready yet
    supervisor.poll()
    gateway.ready = True
    supervisor.poll()
    supervisor.poll()

    assert [line for line in lines if "ready again" in line] == ["gateway is ready again (pid 101)"]


def test_a_service_that_keeps_dying_makes_up_give_up_with_its_log_and_the_fix(
    supervisor, services, clock, lines
):
    booking = services["booking"]
    for _ in range(4):
        booking.code = 1
        supervisor.poll()  # notices the exit
        clock.now += 30  # the backoff (at most 8 s here) has elapsed; never 60 s up
        supervisor.poll()  # restarts
    booking.code = 1

    with pytest.raises(CrashLoopError) as failure:
        supervisor.poll()

    assert len(booking.restart_reasons) == 4
    message = str(failure.value)
    assert "booking stopped 5 times" in message
    assert "exit code 1" in message
    assert "ValueError: no such topic" in message  # the tail of its log
    assert str(booking.log_path) in message
    assert "bookify up` again" in message
    stops = [line for line in lines if " stopped (" in line]
    assert len(stops) == 4
    for n, (delay, line) in enumerate(zip([1, 2, 4, 8], stops, strict=True), start=1):
        assert f"restart {n} in {delay} s (crash {n} of 5 allowed within 300 s)" in line


def test_a_restart_that_cannot_even_start_counts_as_a_crash_and_is_retried(
    supervisor, services, clock, lines
):
    consumer = services["consumer"]
    consumer.code = 1
    supervisor.poll()
    consumer.start_error = PortInUseError("port 8002 is taken")
    clock.now += 1
    supervisor.poll()

    assert "could not start: port 8002 is taken" in lines[-1]
    assert "restart 2 in 2 s" in lines[-1]

    consumer.start_error = None
    clock.now += 2
    supervisor.poll()
    assert consumer.restart_reasons == ["it stopped (could not start: port 8002 is taken)"]


def test_run_polls_until_told_to_stop_sleeping_through_the_injected_sleep(services, clock):
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds

    supervisor = Supervisor(services.values(), POLICY, clock=clock, sleep=nap)
    services["gateway"].code = 3

    supervisor.run(stop=lambda: len(naps) == 6, interval=0.25)

    assert naps == [0.25] * 6
    assert services["gateway"].restart_reasons == ["it stopped (exit code 3)"]  # due at 1 s
