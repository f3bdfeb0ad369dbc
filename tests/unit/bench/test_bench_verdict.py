"""`bookify bench verdict` counts flagged pairs into its two rates; load runs and the fault
switch are hand-written fakes here (the bench itself runs against `bookify up`), and a
replay judges run folders recorded from synthetic samples."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from bookify_bench.verdict import (
    VerdictBenchConfig,
    bench_verdict,
    fit_run_noise,
    replay_verdict,
    verdict_report,
)
from loadtests.gates import BaselineSettings
from loadtests.recorder import Recorder
from loadtests.report import finalize
from shared.faults import FaultSettings

T0 = 1_700_000_000.0


class Switch:
    def __init__(self) -> None:
        self.latency_ms = 0.0
        self.applied: list[float] = []

    def apply(self, plan: Mapping[str, FaultSettings]) -> object:
        self.latency_ms = plan["gateway"].latency_ms
        self.applied.append(self.latency_ms)
        return {}

    def reset(self) -> None:
        self.latency_ms = 0.0


class FakeLoad:
    """Writes summary.json as a run would: p50 10 ms, plus whatever the switch adds; a
    candidate flags a regression when it is slower by more than ``noticed_ms``, and the
    first A/A candidate is a false alarm."""

    def __init__(self, switch: Switch, noticed_ms: float = 1.0) -> None:
        self.switch, self.noticed_ms = switch, noticed_ms
        self.calls: list[tuple[Path, Path | None]] = []

    def __call__(self, config: VerdictBenchConfig, run_dir: Path, baseline: Path | None) -> int:
        self.calls.append((run_dir, baseline))
        slower = self.switch.latency_ms
        false_alarm = baseline is not None and run_dir.parent.name == "aa-01"
        verdict = "REGRESSION" if slower > self.noticed_ms or false_alarm else "EQUIVALENT"
        comparisons = [] if baseline is None else [
            {"name": "GET /x", "percentile": 50.0, "verdict": verdict,
             "delta_ms": slower, "ratio": (10 + slower) / 10},
            {"name": "GET /x", "percentile": 95.0, "verdict": "EQUIVALENT",
             "delta_ms": 0.0, "ratio": 1.0},
        ]  # fmt: skip
        summary = {
            "total": {"p50": 10.0 + slower},
            "comparisons": comparisons,
            "meta": {"start_differences": ["did not start alike"] if baseline else []},
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(summary), "utf-8")
        return 4 if verdict == "REGRESSION" else 0


def test_the_rates_count_flagged_pairs_of_each_kind(tmp_path: Path) -> None:
    switch = Switch()
    load = FakeLoad(switch)
    config = VerdictBenchConfig(host="http://gw", runs_root=tmp_path, pairs=3, duration=15)
    said: list[str] = []
    figures = bench_verdict(config, said.append, run_load=load, faults=switch)
    assert [p.kind for p in figures.pairs] == ["A/A", "A/B"] * 3
    assert switch.applied == [2.0, 2.0, 2.0], "20 % of the baseline's 10 ms p50"
    assert switch.latency_ms == 0.0, "switched off after each candidate"
    assert figures.rate("A/A") == (1, 3)
    assert figures.rate("A/B") == (3, 3)
    data = figures.as_dict()
    assert data["false_positive_rate"] == 1 / 3
    assert data["detection_rate"] == 1.0
    assert data["config"]["window_s"] == 1.25
    report = verdict_report(figures)
    assert "false positives (A/A flagged)   1/3 (33%)" in report
    assert "detections (A/B flagged)        3/3 (100%)" in report
    assert "6 pair(s) did not start alike" in report
    assert "A/B pair 2/3, +2 ms on the gateway: GET /x p50 +2.0 ms (x1.20)" in said[3]


def test_each_candidate_is_compared_with_its_own_baseline_runs(tmp_path: Path) -> None:
    switch = Switch()
    load = FakeLoad(switch)
    config = VerdictBenchConfig(
        host="http://gw", runs_root=tmp_path, pairs=1, duration=60, baseline_runs=3
    )
    figures = bench_verdict(config, lambda _: None, run_load=load, faults=switch)
    baselines = [run for run, base in load.calls if base is None]
    assert len(baselines) == 6
    assert {base for _, base in load.calls if base} == {
        tmp_path / "aa-01" / "baseline",
        tmp_path / "ab-01" / "baseline",
    }
    assert figures.config.window == 5.0
    assert config.runs() == 8


def test_a_slowdown_below_what_the_verdict_notices_is_a_miss(tmp_path: Path) -> None:
    switch = Switch()
    config = VerdictBenchConfig(
        host="http://gw", runs_root=tmp_path, pairs=2, duration=30, slowdown=0.05
    )
    figures = bench_verdict(config, lambda _: None, run_load=FakeLoad(switch), faults=switch)
    assert figures.rate("A/B") == (0, 2)
    assert "detections (A/B flagged)        0/2 (0%)" in verdict_report(figures)


def recorded_run(run_dir: Path, seed: int, slow: float = 1.0) -> None:
    """A 60 s run folder as `bookify load` leaves it: one endpoint at ~50 req/s."""
    rng = np.random.default_rng(seed)
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    for second in range(60):
        for start in T0 + second + rng.random(50):
            rec.record("GET /x", start, 0.01 * slow * rng.lognormal(0, 0.2), True)
        rec.tick(T0 + second + 1)
    rec.stop(T0 + 60)
    finalize(run_dir, rec)


def test_a_replay_judges_recorded_pairs_again_with_more_baseline_runs(tmp_path: Path) -> None:
    for index in (1, 2, 3):
        recorded_run(tmp_path / f"aa-0{index}" / "baseline", 10 * index)
        recorded_run(tmp_path / f"aa-0{index}" / "candidate", 10 * index + 1)
        recorded_run(tmp_path / f"ab-0{index}" / "baseline", 10 * index + 2)
        recorded_run(tmp_path / f"ab-0{index}" / "candidate", 10 * index + 3, slow=1.5)
    said: list[str] = []

    one = replay_verdict(tmp_path, progress=said.append)
    assert one.replayed
    assert (one.rate("A/A"), one.rate("A/B")) == ((0, 3), (3, 3))
    assert said[0].startswith("A/A aa-01: no regression")

    # Three baseline runs a pair: aa-01 has no two same-code runs before it, and is left out.
    three = replay_verdict(tmp_path, baseline_runs=3, progress=said.append)
    assert [p.folder.rsplit("/", 1)[-1] for p in three.pairs][:2] == ["ab-01", "aa-02"]
    assert (three.rate("A/A"), three.rate("A/B")) == ((0, 2), (3, 3))
    report = verdict_report(three)
    assert report.startswith(
        f"verdict replay of {tmp_path}: 2 A/A + 3 A/B pairs judged again, 3 baseline run(s)"
    )
    assert "detections (A/B flagged)        3/3 (100%)\n" in report  # no slowdown: unknown


def test_a_replay_of_a_folder_without_pairs_names_what_it_wanted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no aa-NN or ab-NN pair folders"):
        replay_verdict(tmp_path)


def test_a_replay_fits_the_run_to_run_noise_of_its_a_a_pairs(tmp_path: Path) -> None:
    # Candidates whose whole level is off by +-10 %: a pair's log ratio strays by about 0.1,
    # so one run by about 0.1 / sqrt(2), beyond what the windows explain.
    for index, level in enumerate((0.9, 1.1, 0.9, 1.1), start=1):
        recorded_run(tmp_path / f"aa-0{index}" / "baseline", 10 * index)
        recorded_run(tmp_path / f"aa-0{index}" / "candidate", 10 * index + 1, slow=level)
    settings = BaselineSettings(percentiles=(50.0,), skip_first=1, resamples=200)
    pairs = [
        (tmp_path / f"aa-0{i}" / "baseline", tmp_path / f"aa-0{i}" / "candidate")
        for i in (1, 2, 3, 4)
    ]
    assert 0.05 < fit_run_noise(pairs, settings)[50.0] < 0.09

    figures = replay_verdict(tmp_path, progress=lambda _: None)
    assert 0.05 < figures.run_noise_fit[50.0] < 0.09
    assert figures.as_dict()["run_noise_fit"]["p50"] == figures.run_noise_fit[50.0]
    fitted = f"p50 {figures.run_noise_fit[50.0]:g}"
    assert f"run-to-run noise on the A/A pairs (sd of a run's log percentile): {fitted}, " in (
        verdict_report(figures)
    )


def test_runs_alike_but_for_their_samples_fit_little_run_to_run_noise(tmp_path: Path) -> None:
    for index in (1, 2, 3):
        recorded_run(tmp_path / f"aa-0{index}" / "baseline", 10 * index)
        recorded_run(tmp_path / f"aa-0{index}" / "candidate", 10 * index + 1)
    settings = BaselineSettings(percentiles=(50.0,), skip_first=1, resamples=200)
    pairs = [
        (tmp_path / f"aa-0{i}" / "baseline", tmp_path / f"aa-0{i}" / "candidate") for i in (1, 2, 3)
    ]
    assert fit_run_noise(pairs, settings)[50.0] < 0.02
    assert fit_run_noise([], settings) == {}
