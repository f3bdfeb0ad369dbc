"""`bookify bench verdict` counts flagged pairs into its two rates; load runs and the fault
switch are hand-written fakes here (the bench itself runs against `bookify up`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from bookify_bench.verdict import VerdictBenchConfig, bench_verdict, verdict_report
from shared.faults import FaultSettings


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
