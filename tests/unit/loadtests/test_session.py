"""The run lifecycle both load models share: the fault plan, the run's meta, its end."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from loadtests.faultctl import (
    DEFAULT_ERROR_PLAN,
    FaultInjectionError,
    FaultTarget,
    parse_plan,
    targets,
)
from loadtests.gates import ExitCode, SloConfig
from loadtests.options import LoadOptions
from loadtests.recorder import Recorder, RunSummary
from loadtests.session import (
    CLOSED_MODEL,
    OPEN_MODEL,
    FaultPlan,
    GatewayCpu,
    LoadModel,
    RunSession,
)
from loadtests.shapes import BookifyShape, StepHealth, StepWindow, StressShape, build_shape
from shared.faults import FaultSettings

HOST, BOOKING, CONSUMER = "http://gw:8000", "http://booking:8001", "http://consumer:8002"
T0 = 1_700_000_000.0
LENIENT = SloConfig.from_mapping({"defaults": {"p95_ms": 100, "max_error_ratio": 0.05}})
NO_URL = "faults: no URL for booking, consumer (--booking-url/--consumer-url); skipping them"


class FakeControl:
    """Fault switches that remember what they were told, and fail when told to."""

    def __init__(self, *, fail_on: bool = False, fail_off: bool = False) -> None:
        self.active: set[str] = set()
        self.applied: list[dict[str, FaultSettings]] = []
        self.resets = 0
        self.fail_on, self.fail_off = fail_on, fail_off

    def apply(self, plan: Mapping[str, FaultSettings]) -> object:
        self.applied.append(dict(plan))
        self.active.add("gateway")  # like FaultController: services switch one by one
        if self.fail_on:
            raise FaultInjectionError("booking fault switch answered 500: boom")
        self.active.update(plan)
        return {}

    def reset(self) -> None:
        self.resets += 1
        self.active.clear()
        if self.fail_off:
            raise FaultInjectionError("gateway fault switch at http://gw: ConnectError")


class Connector:
    """Stands in for faultctl.FaultController(available, run_id): hands out one fake."""

    def __init__(self, control: FakeControl | None = None) -> None:
        self.control = control or FakeControl()
        self.calls: list[tuple[dict[str, FaultTarget], str]] = []

    def __call__(self, available: Mapping[str, FaultTarget], run_id: str) -> FakeControl:
        self.calls.append((dict(available), run_id))
        return self.control


def fault_plan(
    said: list[str],
    connect: Connector,
    *,
    shape: str = "error",
    spec: str = "",
    urls: bool = True,
) -> FaultPlan:
    options = LoadOptions(
        shape=shape,
        host=HOST,
        faults=spec,
        booking_url=BOOKING if urls else None,
        consumer_url=CONSUMER if urls else None,
    )
    return FaultPlan.for_shape(
        build_shape(shape, level=2, duration=60),
        options,
        host=HOST,
        run_id="run-1",
        say=said.append,
        connect=connect,
    )


# ---------------------------------------------------------------- the fault plan
@pytest.mark.parametrize("shape", ["soak", "spike", "stress"])
def test_only_the_error_shape_has_faults(shape: str) -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect, shape=shape, spec="gateway.latency_ms=5")
    plan.follow_phase(None, "faults")
    plan.switch_off()
    assert (plan.settings, plan.control, connect.calls, said) == ({}, None, [], [])


@pytest.mark.parametrize("spec", ["none", " None "])
def test_faults_none_switches_nothing(spec: str) -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect, spec=spec)
    plan.follow_phase("errors", "faults")
    assert (plan.settings, plan.control, connect.calls, said) == ({}, None, [], [])


def test_no_spec_is_the_default_plan_on_every_service_with_a_url() -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect)
    assert plan.settings == parse_plan(DEFAULT_ERROR_PLAN)
    assert connect.calls == [(targets(HOST, booking_url=BOOKING, consumer_url=CONSUMER), "run-1")]
    assert said == []


def test_a_bad_plan_fails_before_any_load() -> None:
    with pytest.raises(ValueError, match=r"service\.field=value"):
        fault_plan([], Connector(), spec="gateway")


def test_the_faults_phase_switches_faults_on_and_leaving_it_off() -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect, spec="gateway.latency_ms=150,booking.error_rate=0.2")
    plan.follow_phase(None, "errors")
    assert connect.control.applied == []
    plan.follow_phase("errors", "faults")
    assert connect.control.applied == [plan.settings]
    assert connect.control.active == {"gateway", "booking"}
    plan.follow_phase("faults", "recovery")
    plan.follow_phase("recovery", None)
    assert connect.control.resets == 1
    assert said == [
        "faults on: gateway {'latency_ms': 150.0}, booking {'error_rate': 0.2}",
        "faults off",
    ]
    assert plan.log == said


def test_a_service_without_a_url_is_skipped_and_said_once() -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect, urls=False)
    assert set(plan.settings) == {"gateway"}
    for _ in range(2):  # e.g. two runs of the phase: the warning is not repeated
        plan.follow_phase("errors", "faults")
        plan.follow_phase("faults", "recovery")
    assert said.count(NO_URL) == 1
    assert said[0] == NO_URL
    assert said[1:] == ["faults on: gateway {'latency_ms': 50.0}", "faults off"] * 2
    assert [set(p) for p in connect.control.applied] == [{"gateway"}, {"gateway"}]
    assert NO_URL not in plan.log  # a warning about the options, not a switch


def test_switches_that_fail_are_said_and_logged_and_off_is_still_tried() -> None:
    said: list[str] = []
    connect = Connector(FakeControl(fail_on=True, fail_off=True))
    plan = fault_plan(said, connect)
    plan.switch_on()
    plan.switch_off()  # the gateway went on before booking failed: it must go off again
    assert said == [
        "faults NOT switched on: booking fault switch answered 500: boom",
        "faults NOT switched off (do it by hand!): gateway fault switch at http://gw: ConnectError",
    ]
    assert plan.log == said


def test_switching_off_when_nothing_is_on_does_nothing() -> None:
    said: list[str] = []
    connect = Connector()
    plan = fault_plan(said, connect)
    plan.switch_off()
    plan.switch_on()
    plan.switch_off()
    plan.switch_off()
    assert connect.control.resets == 1
    assert said.count("faults off") == 1


# ---------------------------------------------------------------- the run
def recorded(phases: list[tuple[str, float]]) -> Recorder:
    """5 s windows from T0, 10 requests/s; per window its phase and latency (ms)."""
    end = T0 + 5 * len(phases)
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: end, cpu_clock=lambda: 0.0)
    for index, (phase, latency_ms) in enumerate(phases):
        rec.set_phase(phase)
        rec.set_users(2)
        for k in range(50):
            rec.record("GET /x", T0 + 5 * index + k / 10, latency_ms / 1000, True, 200)
        rec.tick(T0 + 5 * index + 2.5)
    return rec


def run_session(
    tmp_path: Path,
    shape: BookifyShape,
    recorder: Recorder,
    said: list[str],
    *,
    model: LoadModel = CLOSED_MODEL,
    faults: FaultPlan | None = None,
) -> RunSession:
    shape.wall_start = T0
    return RunSession(
        model=model,
        run_id="run-1",
        host=HOST,
        shape=shape,
        recorder=recorder,
        run_dir=tmp_path,
        faults=faults or FaultPlan({}, None, said.append),
        say=said.append,
        resources=4,
        principals=10,
    )


def requests(summary: RunSummary) -> str:
    return f"done: {summary.total.count} requests"


def test_finish_writes_the_run_folder_and_says_the_verdict(tmp_path: Path) -> None:
    said: list[str] = []
    run = run_session(
        tmp_path, build_shape("soak", level=2, duration=30), recorded([("soak", 10)] * 6), said
    )
    outcome = run.finish(
        slo=LENIENT, baseline=None, model_meta={"processes": 2}, done_line=requests
    )
    assert outcome.exit_code is ExitCode.PASS
    assert said == [
        "done: 300 requests",
        "PASS: every SLO gate held (exit code 0)",
        f"report: {tmp_path / 'report.html'}",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text("utf-8"))
    assert summary["title"] == "Bookify load test: soak"
    assert summary["meta"] == {
        "run_id": "run-1",
        "host": HOST,
        "model": "closed (Locust users)",
        "processes": 2,
        "shape": {"shape": "soak", "level": 2, "duration_s": 30},
        "resources": 4,
        "principals": 10,
        "data_state": None,
        "follow": "poll",
        "gateway_cpu": None,
        "baseline": None,
    }
    assert list(summary["meta"])[:4] == ["run_id", "host", "model", "processes"]


def test_the_open_model_names_itself_and_reports_its_rates(tmp_path: Path) -> None:
    said: list[str] = []
    run = run_session(
        tmp_path,
        build_shape("soak", level=10, duration=30),
        recorded([("soak", 10)] * 6),
        said,
        model=OPEN_MODEL,
    )
    run.finish(
        slo=LENIENT,
        baseline=None,
        model_meta={"arrivals": {"intended": 300, "dropped": 0, "skipped_polls": 0}},
        done_line=requests,
        intended_rate=10.0,
        achieved_rate=10.0,
    )
    summary = json.loads((tmp_path / "summary.json").read_text("utf-8"))
    assert summary["title"] == "Bookify load test: soak (open model)"
    assert summary["meta"]["model"] == "open (arrival rate)"
    assert summary["meta"]["arrivals"]["intended"] == 300
    assert summary["open_model"] == {"intended_rate": 10.0, "achieved_rate": 10.0}


def test_a_failed_verdict_says_every_reason(tmp_path: Path) -> None:
    said: list[str] = []
    strict = SloConfig.from_mapping({"defaults": {"p95_ms": 5}})
    run = run_session(
        tmp_path, build_shape("soak", level=2, duration=30), recorded([("soak", 10)] * 6), said
    )
    outcome = run.finish(slo=strict, baseline=None, model_meta={}, done_line=requests)
    assert outcome.exit_code is ExitCode.SLO_BREACH
    assert outcome.reasons
    assert f"{outcome.headline} (exit code 3)" in said
    assert [line for line in said if line.startswith("  - ")] == [
        f"  - {reason}" for reason in outcome.reasons
    ]


def test_finish_switches_faults_off_even_when_the_run_folder_cannot_be_written(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    connect = Connector()
    faults = fault_plan(said, connect)
    faults.follow_phase("errors", "faults")  # the run ends inside its faults phase
    run = run_session(
        tmp_path,
        build_shape("error", level=2, duration=30),
        recorded([("faults", 10)] * 6),
        said,
        faults=faults,
    )
    with pytest.raises(ValueError, match="neither a run folder"):  # no such baseline folder
        run.finish(slo=LENIENT, baseline=tmp_path / "missing", model_meta={}, done_line=requests)
    assert connect.control.active == set()
    assert connect.control.resets == 1
    assert said[-1] == "faults off"


def test_the_meta_keeps_the_fault_log_and_the_capacity_in_the_models_unit(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    connect = Connector()
    faults = fault_plan(said, connect)
    faults.switch_on()
    faults.switch_off()
    shape = StressShape(level=2, duration=60, step_s=20)
    shape.judge_step(1, StepHealth(100, 10.0, 0.0))
    shape.judge_step(2, StepHealth(100, 900.0, 0.0))
    closed = run_session(tmp_path, shape, recorded([]), said, faults=faults)
    opened = run_session(tmp_path, shape, recorded([]), said, faults=faults, model=OPEN_MODEL)
    assert closed.meta({})["faults"] == faults.log == said
    assert closed.meta({})["capacity_users"] == 2
    assert "capacity_users" not in opened.meta({})
    assert opened.meta({})["capacity_rate"] == 2


def test_a_spike_run_says_how_long_recovery_took(tmp_path: Path) -> None:
    said: list[str] = []
    phases = [("baseline", 10), ("baseline", 10), ("spike", 400), ("recovery", 300)]
    phases += [("recovery", 11), ("recovery", 10)]
    run = run_session(tmp_path, build_shape("spike", level=1, duration=60), recorded(phases), said)
    run.finish(slo=SloConfig(), baseline=None, model_meta={}, done_line=requests)
    assert "spike recovery: p95 back to baseline 5 s after the spike" in said
    meta = json.loads((tmp_path / "summary.json").read_text("utf-8"))["meta"]
    assert meta["recovery_s"] == 5.0


def test_a_steps_health_counts_the_requests_that_started_in_its_window(tmp_path: Path) -> None:
    shape = StressShape(level=2, duration=30, step_s=10)
    run = run_session(tmp_path, shape, recorded([("step-1", 10)] * 2 + [("step-2", 50)] * 2), [])
    health = run.step_health(StepWindow(2, 4, 10.0, 20.0))
    assert health.count == 100
    assert 49 < health.p95_ms < 51
    shape.wall_start = None  # before the shape's first tick there is nothing to judge
    assert math.isnan(run.step_health(StepWindow(1, 2, 0.0, 10.0)).p95_ms)


# ---------------------------------------------------------------- the gateways' CPU
def test_the_gateways_cpu_is_summed_over_replicas_between_start_and_end() -> None:
    clock = {"http://a": 10.0, "http://b": 4.0}
    cpu = GatewayCpu(["http://a", "http://b"], read=clock.get)
    clock["http://a"], clock["http://b"] = 13.0, 5.5
    result = cpu.result()
    assert result is not None
    assert (result["seconds"], result["gateways"]) == (4.5, 2)
    assert result["cores"] > 0


def test_a_gateway_that_does_not_answer_gives_no_cpu_figure() -> None:
    clock: dict[str, float | None] = {"http://a": 10.0, "http://b": None}
    assert GatewayCpu(["http://a", "http://b"], read=clock.get).result() is None
    assert GatewayCpu.start(None).result() is None
