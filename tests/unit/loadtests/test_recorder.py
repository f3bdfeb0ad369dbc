from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.recorder import Recorder

T0 = 1_000.0


class FakeCpu:
    """CPU seconds the test decides, instead of this process's real usage."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def make(*, cpu_clock: Callable[[], float] | None = None, raw_path: Path | None = None) -> Recorder:
    return Recorder(
        window_s=5.0,
        t0=T0,
        clock=lambda: T0,
        cpu_clock=cpu_clock,
        measure_cpu=False,
        raw_path=raw_path,
    )


def test_samples_land_in_the_window_of_their_start_time() -> None:
    rec = make()
    rec.record("GET /a", T0 + 0.1, 0.010)
    rec.record("GET /a", T0 + 4.999, 0.020, ok=False, status=500)
    rec.record("GET /a", T0 + 5.0, 0.030)
    rec.record("GET /b", T0 + 12.0, 0.040)
    rec.flush()
    assert [w.index for w in rec.windows] == [0, 1, 2]
    assert (rec.cell("GET /a", 0).count, rec.cell("GET /a", 0).errors) == (2, 1)
    assert rec.cell("GET /a", 1).count == 1
    assert rec.cell("GET /a", 2).count == 0  # gap filled with an empty window
    assert rec.cell("GET /b", 2).count == 1
    assert rec.cell(None, 0).count == 2
    assert rec.endpoints == ["GET /a", "GET /b"]


def test_recording_only_buffers_until_the_next_tick() -> None:
    rec = make()
    rec.record("GET /a", T0 + 1, 0.010)
    assert rec.cell("GET /a", 0).count == 0
    rec.tick(T0 + 1.5)
    assert rec.cell("GET /a", 0).count == 1


def test_latency_percentiles_are_kept_to_hdr_precision() -> None:
    rec = make()
    for ms in range(1, 101):
        rec.record("GET /a", T0 + 1, ms / 1000)
    rec.stop(T0 + 5)
    stats = rec.stats("GET /a")
    assert stats.count == 100
    assert stats.p50 == pytest.approx(50, rel=2e-3)
    assert stats.p99 == pytest.approx(99, rel=2e-3)
    assert stats.max == pytest.approx(100, rel=2e-3)
    assert stats.rps == pytest.approx(20.0)


def test_phase_and_users_are_noted_per_window_on_tick() -> None:
    rec = make()
    rec.set_phase("ramp")
    rec.set_users(5)
    rec.tick(T0 + 1)
    rec.set_users(10)
    rec.tick(T0 + 2)
    rec.set_phase("steady")
    rec.tick(T0 + 6)
    first, second = rec.windows
    assert (first.phase, first.users) == ("ramp", 10)
    assert (second.phase, second.users) == ("steady", 10)


def test_e2e_samples_are_kept_apart_from_requests() -> None:
    rec = make()
    rec.record_e2e(T0 + 1, 0.5)
    rec.record("GET /a", T0 + 1, 0.01)
    summary = rec.summary()
    assert summary.total.count == 1
    assert summary.e2e is not None
    assert summary.e2e.count == 1
    assert summary.e2e.p50 == pytest.approx(500, rel=2e-3)


def test_generator_busy_most_windows_marks_the_run_invalid() -> None:
    cpu = FakeCpu()
    rec = make(cpu_clock=cpu)
    rec.tick(T0)
    for second in range(1, 21):
        cpu.seconds += 0.95 if second <= 15 else 0.2
        rec.tick(T0 + second)
    rec.stop(T0 + 20)
    validity = rec.validity()
    assert [round(w.cpu_utilisation or 0, 2) for w in rec.windows] == [0.95, 0.95, 0.95, 0.2]
    assert not validity.valid
    assert "3/4 windows above 90%" in validity.reason


def test_a_generator_with_headroom_leaves_the_run_valid() -> None:
    cpu = FakeCpu()
    rec = make(cpu_clock=cpu)
    rec.tick(T0)
    for second in range(1, 21):
        cpu.seconds += 0.5 if second != 3 else 1.0
        rec.tick(T0 + second)
    assert rec.validity().valid
    assert rec.validity().max_cpu == pytest.approx(0.6)


def test_cpu_between_ticks_is_split_across_the_windows_it_spans() -> None:
    cpu = FakeCpu()
    rec = make(cpu_clock=cpu)
    rec.tick(T0 + 4)
    cpu.seconds = 2.0
    rec.tick(T0 + 6)
    first, second = rec.windows
    assert [first.cpu_seconds, first.cpu_wall_seconds] == pytest.approx([1.0, 1.0])
    assert [second.cpu_seconds, second.cpu_wall_seconds] == pytest.approx([1.0, 1.0])


def test_cpu_is_measured_by_default() -> None:
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0)
    rec.tick(T0)
    sum(i * i for i in range(300_000))  # burn a little CPU
    rec.tick(T0 + 1)
    assert rec.windows[0].cpu_wall_seconds == 1.0
    assert rec.windows[0].cpu_seconds > 0


def test_unmeasured_cpu_does_not_invalidate_the_run() -> None:
    rec = make()
    rec.tick(T0 + 1)
    assert rec.validity().valid
    assert rec.validity().reason == "generator CPU not measured"


def test_window_selection_drops_partial_warmup_and_other_phases() -> None:
    rec = make()
    for second, phase in [
        (1, "warmup"),
        (6, "steady"),
        (11, "steady"),
        (16, "steady"),
        (21, "cooldown"),
    ]:
        rec.set_phase(phase)
        rec.tick(T0 + second)
    rec.stop(T0 + 18)  # window 3 (15-20 s) is cut short
    assert [w.index for w in rec.select_windows()] == [0, 1, 2]
    assert [w.index for w in rec.select_windows(phases={"steady"})] == [1, 2]
    assert [w.index for w in rec.select_windows(phases={"steady"}, skip_first=1)] == [2]


def test_save_and_load_give_the_same_windows_and_numbers(tmp_path: Path) -> None:
    cpu = FakeCpu()
    rec = make(cpu_clock=cpu)
    rec.set_phase("steady")
    rec.set_users(3)
    rec.tick(T0)
    for i in range(200):
        rec.record("POST /bookings", T0 + i * 0.05, (i % 50 + 1) / 1000, ok=i % 10 != 0, status=201)
        rec.record_e2e(T0 + i * 0.05, 0.2)
    cpu.seconds = 4.0
    rec.stop(T0 + 10)
    rec.save(tmp_path)
    loaded = Recorder.load(tmp_path)
    assert loaded.windows == rec.windows
    assert loaded.summary() == rec.summary()
    assert loaded.windowed("POST /bookings").percentile(95) == rec.windowed(
        "POST /bookings"
    ).percentile(95)


def test_raw_samples_stream_to_a_gzipped_csv(tmp_path: Path) -> None:
    raw = tmp_path / "samples.csv.gz"
    rec = make(raw_path=raw)
    rec.record("GET /a", T0 + 1.5, 0.0125, ok=False, status=503)
    rec.record_e2e(T0 + 2, 0.3)
    rec.stop(T0 + 3)
    with gzip.open(raw, "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["kind", "name", "start_s", "latency_ms", "ok", "status"],
        ["request", "GET /a", "1.500000", "12.500", "0", "503"],
        ["e2e", "booking", "2.000000", "300.000", "1", "0"],
    ]


def test_locust_request_events_become_samples() -> None:
    rec = make()
    rec.on_locust_request(
        request_type="GET",
        name="/resources",
        response_time=12.0,
        response_length=10,
        exception=None,
        start_time=T0 + 1,
        context={},
    )
    rec.on_locust_request(
        request_type="POST",
        name="/bookings",
        response_time=30.0,
        response_length=0,
        exception=RuntimeError("500"),
        start_time=T0 + 7,
    )
    rec.flush()
    assert rec.cell("GET /resources", 0).count == 1
    assert rec.cell("POST /bookings", 1).errors == 1
