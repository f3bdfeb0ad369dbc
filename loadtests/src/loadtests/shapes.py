"""Load shapes: spike, stress, soak and error (DESIGN §6).

Every shape is a ``locust.LoadTestShape`` parametrised by a base *level* and a duration.
The level is a number of users for Locust's closed model, or an arrival rate (per second)
for the open model (:mod:`loadtests.runner`), so one shape serves both. Each tick also
names the active **phase** (``shape.phase``), which the recorder stamps on its time windows
and the exporter publishes as ``locust_shape_phase{phase}``.

- ``spike`` -- a ticket drop: ``baseline`` at the base level, ``spike`` at 10x reached
  within ``ramp_s`` seconds, then ``recovery`` back at the base level. How long latency
  takes to come back is measured afterwards (:func:`spike_recovery`).
- ``stress`` -- ``step-1``, ``step-2``, ... each ``step_s`` long and ``step`` higher than the
  last. At the end of each step the live p95 and error ratio of that step (minus its first
  ``settle_s``) are checked against the step SLO; the first unhealthy step ends the test,
  and the last healthy one is the capacity. It also ends after ``max_steps``.
- ``soak`` -- the base level, constant (phase ``soak``).
- ``error`` -- ``errors`` (bad requests beside normal traffic), ``faults`` (the same, with
  server-side fault injection switched on), ``recovery`` (faults off again).

Time comes from ``get_run_time`` (Locust's clock), or from ``clock`` in unit tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from loadtests._locust import LoadTestShape
from loadtests.recorder import Cell, Recorder, window_percentiles

SPIKE_FACTOR = 10.0


@dataclass(frozen=True)
class Stage:
    """What a shape asks for at one moment: a phase and a level (users or arrivals/s)."""

    phase: str
    level: float
    spawn_rate: float


@dataclass(frozen=True)
class Segment:
    """A stretch of constant level, for the open model: ``[start_s, end_s)`` of run time."""

    phase: str
    start_s: float
    end_s: float
    level: float


def _users(level: float) -> int:
    return max(1, math.ceil(level - 1e-9))


class BookifyShape(LoadTestShape):
    """Common machinery: phase bookkeeping, an injectable clock, users from levels."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        level: float,
        duration: float,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        # LoadTestShape.__init__ only starts its clock (untyped, so not called: same thing).
        self.start_time = time.perf_counter()
        if level <= 0:
            raise ValueError("the base level (users or rate) must be positive")
        if duration <= 0:
            raise ValueError("duration must be positive")
        self.level = level
        self.duration = duration
        self._clock = clock
        self._wall_clock = wall_clock
        self.phase: str | None = None
        self.wall_start: float | None = None
        self.finished = False

    # Locust calls these.
    def reset_time(self) -> None:
        self.start_time = time.perf_counter()
        self.wall_start = None
        self.phase = None
        self.finished = False

    def get_run_time(self) -> float:
        if self._clock is not None:
            return self._clock()
        return time.perf_counter() - self.start_time

    def tick(self) -> tuple[int, float] | None:
        now = self.get_run_time()
        if self.wall_start is None:
            self.wall_start = self._wall_clock() - now
        stage = None if self.finished else self.at(now)
        if stage is None:
            self.finished = True
            self.phase = None
            return None
        self.phase = stage.phase
        return _users(stage.level), stage.spawn_rate

    # Shapes implement these.
    @property
    def phases(self) -> tuple[str, ...]:
        """Every phase name the shape can report, in order (for the exporter)."""
        raise NotImplementedError

    def at(self, t: float) -> Stage | None:
        """The stage at run time ``t`` seconds, or None when the test is over."""
        raise NotImplementedError

    def segments(self) -> list[Segment]:
        """The whole shape as constant-level stretches (fixed shapes only)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"shape": self.name, "level": self.level, "duration_s": self.duration}

    def _fast_spawn(self, level: float, within_s: float = 2.0) -> float:
        return max(1.0, level / within_s)


class SoakShape(BookifyShape):
    """Constant load for the whole duration."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = "soak"

    @property
    def phases(self) -> tuple[str, ...]:
        return ("soak",)

    def at(self, t: float) -> Stage | None:
        if t >= self.duration:
            return None
        return Stage("soak", self.level, self._fast_spawn(self.level))

    def segments(self) -> list[Segment]:
        return [Segment("soak", 0.0, self.duration, self.level)]


class SpikeShape(BookifyShape):
    """baseline -> ``factor`` x within ``ramp_s`` -> back to baseline (recovery)."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = "spike"

    def __init__(
        self,
        *,
        level: float,
        duration: float,
        factor: float = SPIKE_FACTOR,
        ramp_s: float = 2.0,
        fractions: tuple[float, float, float] = (0.3, 0.3, 0.4),
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(level=level, duration=duration, clock=clock, wall_clock=wall_clock)
        if factor <= 1:
            raise ValueError("a spike needs factor > 1")
        if ramp_s <= 0:
            raise ValueError("ramp_s must be positive")
        if any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
            raise ValueError("phase fractions must be positive and add up to 1")
        self.factor = factor
        self.ramp_s = ramp_s
        base, spike, _ = fractions
        self.spike_start = duration * base
        self.spike_end = duration * (base + spike)

    @property
    def phases(self) -> tuple[str, ...]:
        return ("baseline", "spike", "recovery")

    @property
    def peak(self) -> float:
        return self.level * self.factor

    def at(self, t: float) -> Stage | None:
        if t >= self.duration:
            return None
        # Up and down both within ramp_s: the drop is as sudden as the rise.
        rate = max(1.0, (self.peak - self.level) / self.ramp_s)
        if t < self.spike_start:
            return Stage("baseline", self.level, self._fast_spawn(self.level))
        if t < self.spike_end:
            return Stage("spike", self.peak, rate)
        return Stage("recovery", self.level, rate)

    def segments(self) -> list[Segment]:
        return [
            Segment("baseline", 0.0, self.spike_start, self.level),
            Segment("spike", self.spike_start, self.spike_end, self.peak),
            Segment("recovery", self.spike_end, self.duration, self.level),
        ]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "factor": self.factor, "peak": self.peak}


class ErrorShape(BookifyShape):
    """Constant load with bad requests; server-side faults switched on in the middle."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = "error"
    FAULT_PHASE: ClassVar[str] = "faults"

    def __init__(
        self,
        *,
        level: float,
        duration: float,
        fractions: tuple[float, float, float] = (0.35, 0.35, 0.3),
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(level=level, duration=duration, clock=clock, wall_clock=wall_clock)
        if any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
            raise ValueError("phase fractions must be positive and add up to 1")
        self.faults_start = duration * fractions[0]
        self.faults_end = duration * (fractions[0] + fractions[1])

    @property
    def phases(self) -> tuple[str, ...]:
        return ("errors", self.FAULT_PHASE, "recovery")

    def at(self, t: float) -> Stage | None:
        if t >= self.duration:
            return None
        spawn = self._fast_spawn(self.level)
        if t < self.faults_start:
            return Stage("errors", self.level, spawn)
        if t < self.faults_end:
            return Stage(self.FAULT_PHASE, self.level, spawn)
        return Stage("recovery", self.level, spawn)

    def segments(self) -> list[Segment]:
        return [
            Segment("errors", 0.0, self.faults_start, self.level),
            Segment(self.FAULT_PHASE, self.faults_start, self.faults_end, self.level),
            Segment("recovery", self.faults_end, self.duration, self.level),
        ]


# ---------------------------------------------------------------------------- stress
@dataclass(frozen=True)
class StepSlo:
    """When a stress step counts as healthy."""

    p95_ms: float = 300.0
    max_error_ratio: float = 0.01
    min_requests: int = 1


@dataclass(frozen=True)
class StepWindow:
    """The part of a step that is judged, in run time (seconds since the shape started)."""

    step: int
    level: float
    start_s: float
    end_s: float


@dataclass(frozen=True)
class StepHealth:
    count: int
    p95_ms: float
    error_ratio: float


@dataclass(frozen=True)
class StepResult:
    step: int
    level: float
    health: StepHealth
    healthy: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "level": self.level,
            "count": self.health.count,
            "p95_ms": None if math.isnan(self.health.p95_ms) else round(self.health.p95_ms, 3),
            "error_ratio": round(self.health.error_ratio, 6),
            "healthy": self.healthy,
            "why": self.why,
        }


def judge(health: StepHealth, slo: StepSlo) -> tuple[bool, str]:
    if health.count < slo.min_requests:
        return False, f"only {health.count} requests (need {slo.min_requests})"
    if health.error_ratio > slo.max_error_ratio:
        return False, f"error ratio {health.error_ratio:.2%} > {slo.max_error_ratio:.2%}"
    if not math.isfinite(health.p95_ms) or health.p95_ms > slo.p95_ms:
        return False, f"p95 {health.p95_ms:.1f} ms > {slo.p95_ms:g} ms"
    return True, f"p95 {health.p95_ms:.1f} ms, errors {health.error_ratio:.2%}"


Evaluator = Callable[[StepWindow], StepHealth]


class StressShape(BookifyShape):
    """Step the level up every ``step_s`` until a step breaks the step SLO."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = "stress"

    def __init__(
        self,
        *,
        level: float,
        duration: float,
        step: float | None = None,
        step_s: float = 30.0,
        settle_s: float | None = None,
        slo: StepSlo = StepSlo(),
        evaluate: Evaluator | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(level=level, duration=duration, clock=clock, wall_clock=wall_clock)
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.step = step if step is not None else level
        if self.step <= 0:
            raise ValueError("step must be positive")
        self.step_s = step_s
        self.settle_s = min(step_s / 3, 5.0) if settle_s is None else settle_s
        if not 0 <= self.settle_s < step_s:
            raise ValueError("settle_s must be in [0, step_s)")
        self.max_steps = max(1, int(duration // step_s))
        self.slo = slo
        self.evaluate = evaluate
        self.results: list[StepResult] = []
        self._judged = 0  # steps judged so far

    def reset_time(self) -> None:
        super().reset_time()
        self.results = []
        self._judged = 0

    @property
    def phases(self) -> tuple[str, ...]:
        return tuple(self.phase_of(k) for k in range(1, self.max_steps + 1))

    @staticmethod
    def phase_of(step: int) -> str:
        return f"step-{step}"

    def level_of(self, step: int) -> float:
        return self.level + (step - 1) * self.step

    def window_of(self, step: int) -> StepWindow:
        start = (step - 1) * self.step_s
        return StepWindow(step, self.level_of(step), start + self.settle_s, start + self.step_s)

    @property
    def capacity(self) -> StepResult | None:
        """The last healthy step (None when even the first step broke)."""
        healthy = [r for r in self.results if r.healthy]
        return healthy[-1] if healthy else None

    @property
    def broke(self) -> bool:
        return any(not r.healthy for r in self.results)

    def judge_step(self, step: int, health: StepHealth | None = None) -> StepResult:
        """Judge a finished step on ``health``, else on what the evaluator says; without
        either it counts as healthy (nothing to judge by)."""
        if health is None and self.evaluate is not None:
            health = self.evaluate(self.window_of(step))
        if health is None:
            health = StepHealth(0, math.nan, 0.0)
            result = StepResult(step, self.level_of(step), health, True, "not evaluated")
        else:
            ok, why = judge(health, self.slo)
            result = StepResult(step, self.level_of(step), health, ok, why)
        self.results.append(result)
        self._judged = step
        return result

    def at(self, t: float) -> Stage | None:
        current = int(t // self.step_s) + 1
        # Judge every step that has ended since the last tick (normally exactly one).
        while self._judged < min(current - 1, self.max_steps):
            if not self.judge_step(self._judged + 1).healthy:
                return None
        if current > self.max_steps:
            return None
        level = self.level_of(current)
        return Stage(self.phase_of(current), level, self._fast_spawn(self.step))

    def describe(self) -> dict[str, Any]:
        capacity = self.capacity
        return {
            **super().describe(),
            "step": self.step,
            "step_s": self.step_s,
            "max_steps": self.max_steps,
            "step_slo": {"p95_ms": self.slo.p95_ms, "max_error_ratio": self.slo.max_error_ratio},
            "steps": [r.to_dict() for r in self.results],
            "capacity": capacity.level if capacity else None,
            "capacity_step": capacity.step if capacity else None,
            "broke": self.broke,
        }


SHAPES: dict[str, type[BookifyShape]] = {
    "spike": SpikeShape,
    "stress": StressShape,
    "soak": SoakShape,
    "error": ErrorShape,
}


# ---------------------------------------------------------------------------- live stats
def recorder_health(recorder: Recorder, since: float, until: float) -> StepHealth:
    """Requests that *started* in ``[since, until)`` (wall time), from the recorder's windows.

    Only whole windows inside the interval count, so the step's own traffic is judged, not
    a window shared with the step before.
    """
    recorder.flush()
    merged = Cell()
    for window in recorder.windows:
        start = recorder.t0 + window.start
        if start >= since - 1e-6 and start + recorder.window_s <= until + 1e-6:
            cell = recorder.cell(None, window.index)
            merged.histogram.add(cell.histogram)
            merged.count += cell.count
            merged.errors += cell.errors
    if not merged.count:
        return StepHealth(0, math.nan, 0.0)
    p95 = window_percentiles(merged, (95.0,))[95.0]
    return StepHealth(merged.count, p95, merged.errors / merged.count)


def spike_recovery(
    recorder: Recorder,
    *,
    baseline: str = "baseline",
    recovery: str = "recovery",
    tolerance: float = 1.25,
) -> float | None:
    """Seconds from the start of ``recovery`` until a window's p95 is back within
    ``tolerance`` x the median baseline-window p95; None if it never came back."""
    base = [
        p
        for w in recorder.windows
        if w.phase == baseline
        and math.isfinite(p := window_percentiles(recorder.cell(None, w.index), (95.0,))[95.0])
    ]
    rec = [w for w in recorder.windows if w.phase == recovery]
    if not base or not rec:
        return None
    target = sorted(base)[len(base) // 2] * tolerance
    for w in rec:
        p95 = window_percentiles(recorder.cell(None, w.index), (95.0,))[95.0]
        if math.isfinite(p95) and p95 <= target:
            return max(0.0, w.start - rec[0].start)
    return None


def build_shape(
    name: str,
    *,
    level: float,
    duration: float,
    step: float | None = None,
    step_s: float | None = None,
    slo: StepSlo | None = None,
    evaluate: Evaluator | None = None,
) -> BookifyShape:
    """A shape by name, with only the parameters that shape takes."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    if name == "stress":
        return StressShape(
            level=level,
            duration=duration,
            step=step,
            step_s=step_s or 30.0,
            slo=slo or StepSlo(),
            evaluate=evaluate,
        )
    shape: BookifyShape = SHAPES[name](level=level, duration=duration)
    return shape
