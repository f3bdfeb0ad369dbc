"""Load shapes, driven tick by tick with a fake clock."""

from __future__ import annotations

import itertools
import math

import pytest

from loadtests.recorder import Recorder
from loadtests.shapes import (
    BookifyShape,
    ErrorShape,
    SoakShape,
    SpikeShape,
    StepHealth,
    StepSlo,
    StepWindow,
    StressShape,
    build_shape,
    recorder_health,
    spike_recovery,
)
from tests.support.clock import FakeClock


def ticks(
    shape: BookifyShape, clock: FakeClock, until: float, every: float = 1.0
) -> list[tuple[float, str | None, tuple[int, float] | None]]:
    """(time, phase, tick) for t = 0, every, 2*every, ... until (inclusive)."""
    out = []
    t = 0.0
    while t <= until + 1e-9:
        clock.set(t)
        state = shape.tick()
        out.append((t, shape.phase, state))
        t += every
    return out


def test_soak_holds_its_users_then_stops() -> None:
    clock = FakeClock()
    shape = SoakShape(level=8, duration=10, clock=clock.monotonic)
    seq = ticks(shape, clock, 12)
    assert [s for t, _, s in seq if t < 10] == [(8, 4.0)] * 10
    assert {p for t, p, _ in seq if t < 10} == {"soak"}
    assert [s for t, _, s in seq if t >= 10] == [None] * 3
    assert shape.phase is None


def test_spike_goes_ten_times_up_within_seconds_and_comes_back() -> None:
    clock = FakeClock()
    shape = SpikeShape(level=5, duration=100, ramp_s=2, clock=clock.monotonic)
    seq = ticks(shape, clock, 100, every=5)
    phases = [p for _, p, _ in seq]
    assert phases[:6] == ["baseline"] * 6  # t = 0..25
    assert phases[6:12] == ["spike"] * 6  # t = 30..55
    assert phases[12:20] == ["recovery"] * 8  # t = 60..95
    assert seq[-1] == (100, None, None)
    users = {
        p: {s[0] for _, q, s in seq if q == p and s} for p in ("baseline", "spike", "recovery")
    }
    assert users == {"baseline": {5}, "spike": {50}, "recovery": {5}}
    spike_rate = next(s[1] for _, p, s in seq if p == "spike" and s)
    assert (50 - 5) / spike_rate <= 2.0  # reaches the peak "within seconds"


def test_a_spike_needs_a_factor_above_one() -> None:
    with pytest.raises(ValueError, match="factor"):
        SpikeShape(level=5, duration=10, factor=1)


def test_error_shape_switches_faults_on_in_the_middle_only() -> None:
    clock = FakeClock()
    shape = ErrorShape(level=4, duration=20, clock=clock.monotonic)
    seq = ticks(shape, clock, 20)
    phases = [p for t, p, _ in seq if t < 20]
    assert phases[0] == "errors"
    assert phases[-1] == "recovery"
    fault_ticks = [t for t, p, _ in seq if p == ErrorShape.FAULT_PHASE]
    assert fault_ticks == [7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
    assert {s for _, _, s in seq if s} == {(4, 2.0)}


def test_segments_cover_the_whole_duration_without_gaps() -> None:
    for shape in (
        SoakShape(level=3, duration=30),
        SpikeShape(level=3, duration=30),
        ErrorShape(level=3, duration=30),
    ):
        segments = shape.segments()
        assert segments[0].start_s == 0
        assert segments[-1].end_s == 30
        for a, b in itertools.pairwise(segments):
            assert a.end_s == b.start_s
        assert [s.phase for s in segments] == list(shape.phases)


class FakeEvaluator:
    """Health per step, and the windows the shape asked about."""

    def __init__(self, p95_by_step: dict[int, float]) -> None:
        self.p95_by_step = p95_by_step
        self.asked: list[StepWindow] = []

    def __call__(self, window: StepWindow) -> StepHealth:
        self.asked.append(window)
        return StepHealth(count=100, p95_ms=self.p95_by_step[window.step], error_ratio=0.0)


def test_stress_steps_up_until_a_step_breaks_and_reports_the_last_healthy_one() -> None:
    clock = FakeClock()
    evaluate = FakeEvaluator({1: 50, 2: 120, 3: 900, 4: 50})
    shape = StressShape(
        level=10, step=5, duration=100, step_s=10, slo=StepSlo(p95_ms=300),
        evaluate=evaluate, clock=clock.monotonic,
    )  # fmt: skip
    seq = ticks(shape, clock, 40)
    users = [s[0] if s else None for _, _, s in seq]
    assert users[:10] == [10] * 10
    assert users[10:20] == [15] * 10
    assert users[20:30] == [20] * 10
    assert users[30:] == [None] * 11  # step 3 broke: stop at t=30
    assert [w.step for w in evaluate.asked] == [1, 2, 3]
    assert shape.capacity is not None
    assert (shape.capacity.step, shape.capacity.level) == (2, 15)
    assert shape.broke
    assert shape.describe()["capacity"] == 15
    assert [p for t, p, _ in seq if t in (0, 10, 20)] == ["step-1", "step-2", "step-3"]


def test_stress_judges_each_step_after_its_settling_time() -> None:
    clock = FakeClock()
    evaluate = FakeEvaluator({1: 1, 2: 1})
    shape = StressShape(
        level=1, duration=20, step_s=10, settle_s=3, evaluate=evaluate, clock=clock.monotonic
    )
    ticks(shape, clock, 21)
    assert [(w.start_s, w.end_s) for w in evaluate.asked] == [(3, 10), (13, 20)]


def test_stress_ends_after_its_last_step_when_nothing_breaks() -> None:
    clock = FakeClock()
    shape = StressShape(
        level=2,
        duration=30,
        step_s=10,
        evaluate=FakeEvaluator({1: 1, 2: 1, 3: 1}),
        clock=clock.monotonic,
    )
    seq = ticks(shape, clock, 35)
    assert [s for t, _, s in seq if t >= 30] == [None] * 6
    assert not shape.broke
    assert shape.capacity is not None
    assert shape.capacity.level == 6


def test_stress_without_a_healthy_step_has_no_capacity() -> None:
    clock = FakeClock()
    shape = StressShape(
        level=2, duration=30, step_s=10, evaluate=FakeEvaluator({1: 5000}), clock=clock.monotonic
    )
    seq = ticks(shape, clock, 12)
    assert seq[10][2] is None
    assert shape.capacity is None


def test_a_step_with_too_many_errors_is_unhealthy_even_when_fast() -> None:
    clock = FakeClock()

    def erroring(window: StepWindow) -> StepHealth:
        return StepHealth(count=100, p95_ms=5.0, error_ratio=0.2)

    shape = StressShape(level=1, duration=30, step_s=10, evaluate=erroring, clock=clock.monotonic)
    ticks(shape, clock, 10)
    assert not shape.results[0].healthy
    assert "error ratio" in shape.results[0].why


def test_reset_time_starts_a_shape_over() -> None:
    clock = FakeClock()
    shape = SoakShape(level=1, duration=5, clock=clock.monotonic)
    ticks(shape, clock, 6)
    assert shape.finished
    shape.reset_time()
    clock.set(0)
    assert shape.tick() == (1, 1.0)


def test_fractional_levels_round_up_to_whole_users() -> None:
    clock = FakeClock()
    assert SoakShape(level=0.4, duration=5, clock=clock.monotonic).tick() == (1, 1.0)
    assert SoakShape(level=2.5, duration=5, clock=clock.monotonic).tick() == (3, 1.25)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("soak", {"level": 0, "duration": 5}), ("soak", {"level": 1, "duration": 0})],
)
def test_shapes_refuse_nonsense_parameters(name: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        build_shape(name, **kwargs)


def test_build_shape_knows_every_shape_by_name() -> None:
    for name in ("spike", "stress", "soak", "error"):
        assert build_shape(name, level=2, duration=60).name == name
    with pytest.raises(ValueError, match="unknown shape"):
        build_shape("ramp", level=1, duration=1)


# ---------------------------------------------------------------- live stats from a recorder
def recorder_with(windows: dict[int, list[tuple[float, bool]]], phases: dict[int, str]) -> Recorder:
    """A recorder (1 s windows, t0 = 1000) with (latency ms, ok) samples per window."""
    clock = FakeClock()
    recorder = Recorder(window_s=1.0, t0=1000.0, clock=clock.monotonic, measure_cpu=False)
    for index, samples in sorted(windows.items()):
        for i, (latency_ms, ok) in enumerate(samples):
            start = 1000.0 + index + i / (len(samples) + 1)
            recorder.record("GET /x", start, latency_ms / 1000, ok, 200 if ok else 503)
        recorder.set_phase(phases.get(index))
        recorder.tick(1000.0 + index + 0.5)
    recorder.stop(1000.0 + max(windows) + 1)
    return recorder


def test_recorder_health_counts_only_whole_windows_inside_the_step() -> None:
    recorder = recorder_with(
        {0: [(500, False)] * 10, 1: [(10, True)] * 19 + [(10, False)], 2: [(20, True)] * 20},
        {},
    )
    health = recorder_health(recorder, 1001.0, 1003.0)
    assert health.count == 40
    assert health.error_ratio == pytest.approx(1 / 40)
    assert 19 < health.p95_ms < 21
    assert recorder_health(recorder, 1000.5, 1001.5).count == 0


def test_recorder_health_without_samples_is_nan() -> None:
    recorder = recorder_with({0: [(1, True)]}, {})
    health = recorder_health(recorder, 2000.0, 2010.0)
    assert health.count == 0
    assert math.isnan(health.p95_ms)


def test_spike_recovery_is_the_time_until_p95_is_back_near_the_baseline() -> None:
    recorder = recorder_with(
        {
            0: [(10, True)] * 20,
            1: [(10, True)] * 20,
            2: [(400, True)] * 20,
            3: [(300, True)] * 20,
            4: [(100, True)] * 20,
            5: [(12, True)] * 20,
        },
        {0: "baseline", 1: "baseline", 2: "spike", 3: "recovery", 4: "recovery", 5: "recovery"},
    )
    assert spike_recovery(recorder) == pytest.approx(2.0)


def test_spike_recovery_is_none_when_latency_never_comes_back() -> None:
    recorder = recorder_with(
        {0: [(10, True)] * 20, 1: [(400, True)] * 20},
        {0: "baseline", 1: "recovery"},
    )
    assert spike_recovery(recorder) is None
