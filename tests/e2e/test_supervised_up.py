"""`bookify up`'s supervision on real service processes: a service killed with SIGKILL comes
back ready with a new pid, the restart is reported, and its log keeps what came before.
`bookify status --json` reports what runs and where the logs are.

The platform is wired exactly as `up` wires it (`recorded_platform`: a log folder per run
and platform.json), on free ports and its own topics and databases, in a temporary run dir.
The supervisor is polled from the test's own (main) thread, as `up` does: the services die
with the thread that spawned them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bookify.cli import app
from bookify_platform.services import Platform, PlatformState, recorded_platform
from bookify_platform.supervisor import RestartPolicy, Supervisor
from tests.otlp import OtlpReceiver
from tests.stack import new_stack_config

pytestmark = pytest.mark.e2e

# Short delays keep the test quick; the policy's arithmetic is unit-tested.
FAST = RestartPolicy(first_delay=0.2, max_delay=1.0)
WITHIN_S = 60  # a bound so a broken supervisor fails the test instead of hanging it


@dataclass
class Supervised:
    platform: Platform
    supervisor: Supervisor
    run_dir: Path
    reports: list[str]

    def supervise_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WITHIN_S
        while not done():
            assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
            self.supervisor.poll()
            time.sleep(0.1)


@pytest.fixture(scope="module")
def supervised(
    kafka: Any, mongo: Any, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Supervised]:
    run_dir = tmp_path_factory.mktemp("supervised-up")
    config = new_stack_config(kafka, mongo, otlp)
    reports: list[str] = []
    with recorded_platform(config, run_dir) as platform:
        supervisor = Supervisor(platform.services.values(), FAST, report=reports.append)
        yield Supervised(platform, supervisor, run_dir, reports)
    assert not PlatformState(run_dir).file.path.exists(), "platform.json outlived the run"


def test_a_killed_service_comes_back_ready_with_a_new_pid_and_its_old_log_kept(
    supervised: Supervised,
) -> None:
    consumer, booking = supervised.platform["consumer"], supervised.platform["booking"]
    old_pid, booking_pid, restarts = consumer.pid, booking.pid, consumer.restarts
    before = consumer.log_path.read_text()
    assert "service_started" in before  # there is evidence worth keeping

    consumer.kill()  # SIGKILL, as a crash
    supervised.supervise_until(
        lambda: consumer.pid != old_pid and consumer.is_ready(), "consumer restarted and ready"
    )

    assert consumer.restarts == restarts + 1
    assert booking.pid == booking_pid  # only the dead one was touched
    (line,) = [r for r in supervised.reports if "consumer stopped" in r]
    assert "signal SIGKILL" in line
    assert "restart 1 in 0.2 s" in line
    assert str(consumer.log_path) in line

    after = consumer.log_path.read_text()
    assert after.startswith(before)  # appended to, never truncated
    marker = f"bookify up: restart {consumer.restarts} of consumer, because it stopped (signal"
    assert marker in after[len(before) :]
    assert "service_started" in after.split(marker, 1)[1]  # the new process logs below it

    recorded = PlatformState(supervised.run_dir).load().processes["consumer"]
    assert (recorded.pid, recorded.restarts) == (consumer.pid, consumer.restarts)


def test_status_json_reports_the_running_services_and_this_runs_log_folder(
    supervised: Supervised,
) -> None:
    platform = supervised.platform
    supervised.supervise_until(
        lambda: all(s.is_ready() for s in platform.services.values()), "every service ready"
    )

    result = CliRunner().invoke(app, ["status", "--json", "--run-dir", str(supervised.run_dir)])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["running"] is True
    assert body["ready"] is True
    assert body["logs"] == str(platform.log_dir)
    assert platform.log_dir.parent == supervised.run_dir / "logs"
    for name, service in platform.services.items():
        reported = body["services"][name]
        assert reported["pid"] == service.pid
        assert reported["url"] == service.url
        assert reported["ready"] is True
        assert reported["restarts"] == service.restarts
        assert reported["log"] == str(platform.log_dir / f"{name}.log")
