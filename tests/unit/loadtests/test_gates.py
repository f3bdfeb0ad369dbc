from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests.gates import ExitCode, GateResult, LatencySlo, SloConfig, SloConfigError, evaluate
from loadtests.options import DEFAULT_SLO
from loadtests.recorder import LatencyStats, RunSummary, Validity
from loadtests.stats import DEFAULT_THRESHOLDS, Comparison, Threshold, Verdict

VALID = Validity(True, "", 0, 10, 0.4)


def stats(
    p95: float = 100.0, p99: float = 200.0, errors: int = 0, count: int = 1000
) -> LatencyStats:
    return LatencyStats(
        count=count,
        errors=errors,
        error_ratio=errors / count if count else 0.0,
        rps=count / 60,
        p50=p95 / 2,
        p90=p95 * 0.9,
        p95=p95,
        p99=p99,
        max=p99 * 2,
    )


def summary(eps: dict[str, LatencyStats]) -> RunSummary:
    count = sum(s.count for s in eps.values())
    errors = sum(s.errors for s in eps.values())
    total = replace(stats(), count=count, errors=errors, error_ratio=errors / count)
    return RunSummary(60.0, 5.0, eps, total, None, VALID)


def verdict(v: Verdict, name: str = "GET /a") -> Comparison:
    return Comparison(
        name=name,
        percentile=95.0,
        verdict=v,
        reason="",
        baseline_value=100.0,
        candidate_value=130.0,
        ratio=1.3,
        ci_low=1.2,
        ci_high=1.4,
        confidence=0.95,
        threshold_relative=0.15,
        threshold_ms=2.0,
        baseline_runs=1,
        run_spread=math.nan,
        method="",
        baseline_samples=1000,
        candidate_samples=1000,
        baseline_windows=12,
        candidate_windows=12,
        diagnostics=None,
    )


CONFIG = SloConfig.from_mapping(
    {
        "defaults": {"p95_ms": 300, "p99_ms": 800, "max_error_ratio": 0.01},
        "endpoints": {"POST /bookings": {"p95_ms": 250}},
        "run": {"max_error_ratio": 0.02, "min_rate_ratio": 0.95},
    }
)


def test_the_shipped_default_config_parses() -> None:
    config = SloConfig.from_toml(DEFAULT_SLO)
    assert config.endpoints["POST /v1/bookings"] == LatencySlo(250, 600, 0.005)
    assert config.e2e == LatencySlo(2000, 5000, None)
    assert config.baseline.percentiles == (50.0, 95.0, 99.0)
    assert config.baseline.thresholds == DEFAULT_THRESHOLDS
    # A single baseline run's run-to-run noise, as A/A pairs measured it (README).
    assert config.baseline.run_noise == {50.0: 0.093, 95.0: 0.15, 99.0: 0.155}


def test_baseline_thresholds_are_set_per_percentile() -> None:
    config = SloConfig.from_mapping(
        {"baseline": {"thresholds": {"p50": {"ms": 3}, "p99.9": {"relative": 0.5, "ms": 20}}}}
    )
    thresholds = config.baseline.thresholds
    assert thresholds[50.0] == Threshold(DEFAULT_THRESHOLDS[50.0].relative, 3.0)
    assert thresholds[99.9] == Threshold(0.5, 20.0)
    assert thresholds[95.0] == DEFAULT_THRESHOLDS[95.0]
    with pytest.raises(SloConfigError, match="percentile like p95"):
        SloConfig.from_mapping({"baseline": {"thresholds": {"pfifty": {"ms": 3}}}})
    with pytest.raises(SloConfigError, match="unknown keys"):
        SloConfig.from_mapping({"baseline": {"thresholds": {"p50": {"percent": 3}}}})
    with pytest.raises(SloConfigError, match="tolerance"):
        SloConfig.from_mapping({"baseline": {"tolerance": 0.1}})


def test_the_run_noise_is_read_per_percentile() -> None:
    config = SloConfig.from_mapping({"baseline": {"run_noise": {"p50": 0.09, "p99.9": 0}}})
    assert config.baseline.run_noise == {50.0: 0.09, 99.9: 0.0}
    with pytest.raises(SloConfigError, match="percentile like p95"):
        SloConfig.from_mapping({"baseline": {"run_noise": {"median": 0.1}}})
    with pytest.raises(SloConfigError, match=r"\[baseline.run_noise\] p95: give a sd >= 0"):
        SloConfig.from_mapping({"baseline": {"run_noise": {"p95": "wide"}}})
    with pytest.raises(SloConfigError, match="must be a table"):
        SloConfig.from_mapping({"baseline": {"run_noise": 0.1}})


def test_unknown_keys_are_rejected_so_typos_cannot_pass(tmp_path: Path) -> None:
    with pytest.raises(SloConfigError, match="p95ms"):
        SloConfig.from_mapping({"defaults": {"p95ms": 300}})
    bad = tmp_path / "slo.toml"
    bad.write_text("[defaults\n", "utf-8")
    with pytest.raises(SloConfigError):
        SloConfig.from_toml(bad)


def test_all_gates_holding_passes_with_exit_zero() -> None:
    outcome = evaluate(summary({"GET /a": stats(), "POST /bookings": stats(p95=240)}), CONFIG)
    assert outcome.exit_code is ExitCode.PASS
    assert int(outcome.exit_code) == 0
    assert outcome.passed
    assert outcome.headline.startswith("PASS")


def test_a_breached_endpoint_percentile_exits_three() -> None:
    outcome = evaluate(summary({"GET /a": stats(), "POST /bookings": stats(p95=260)}), CONFIG)
    assert outcome.exit_code == 3
    failed = [r for r in outcome.results if not r.passed]
    assert [(r.scope, r.metric) for r in failed] == [("POST /bookings", "p95_ms")]
    assert outcome.reasons == ("POST /bookings p95 260.0 ms > SLO 250 ms",)


def test_defaults_apply_to_endpoints_not_listed() -> None:
    outcome = evaluate(summary({"GET /a": stats(p99=900), "POST /bookings": stats()}), CONFIG)
    assert outcome.exit_code == 3
    assert any(
        r.scope == "GET /a" and r.metric == "p99_ms" and not r.passed for r in outcome.results
    )


def test_error_ratio_per_endpoint_and_for_the_run() -> None:
    outcome = evaluate(summary({"GET /a": stats(errors=15), "POST /bookings": stats()}), CONFIG)
    failed = {(r.scope, r.metric) for r in outcome.results if not r.passed}
    assert failed == {("GET /a", "error_ratio")}  # run-wide 0.75 % stays under 2 %
    outcome = evaluate(
        summary({"GET /a": stats(errors=50), "POST /bookings": stats(errors=50)}), CONFIG
    )
    failed = {(r.scope, r.metric) for r in outcome.results if not r.passed}
    assert ("run", "error_ratio") in failed


def test_a_configured_endpoint_without_requests_fails() -> None:
    outcome = evaluate(summary({"GET /a": stats()}), CONFIG)
    assert outcome.exit_code == 3
    missing = [r for r in outcome.results if r.scope == "POST /bookings"]
    assert missing
    assert all(not r.passed and r.actual is None for r in missing)


def test_open_model_rate_below_the_minimum_fails() -> None:
    base = summary({"GET /a": stats(), "POST /bookings": stats()})
    slow = replace(base, intended_rate=100.0, achieved_rate=90.0)
    fine = replace(base, intended_rate=100.0, achieved_rate=99.0)
    assert evaluate(slow, CONFIG).exit_code == 3
    assert evaluate(fine, CONFIG).exit_code == 0
    gate = next(r for r in evaluate(slow, CONFIG).results if r.metric == "rate_ratio")
    assert gate.actual == pytest.approx(0.9)


def test_a_regression_exits_four_even_when_an_slo_also_breaks() -> None:
    breached = summary({"GET /a": stats(), "POST /bookings": stats(p95=260)})
    outcome = evaluate(breached, CONFIG, [verdict(Verdict.REGRESSION)])
    assert outcome.exit_code == 4
    assert "regression" in outcome.headline
    assert any("POST /bookings p95" in r for r in outcome.reasons)


def test_inconclusive_and_equivalent_verdicts_do_not_fail() -> None:
    ok = summary({"GET /a": stats(), "POST /bookings": stats()})
    comparisons = [
        verdict(Verdict.INCONCLUSIVE),
        verdict(Verdict.EQUIVALENT),
        verdict(Verdict.IMPROVEMENT),
    ]
    assert evaluate(ok, CONFIG, comparisons).exit_code == 0


def test_a_saturated_generator_makes_the_run_invalid_above_everything() -> None:
    saturated = Validity(False, "load generator saturated: 9/10 windows", 9, 10, 0.99)
    run = replace(
        summary({"GET /a": stats(), "POST /bookings": stats(p95=999)}), validity=saturated
    )
    outcome = evaluate(run, CONFIG, [verdict(Verdict.REGRESSION)])
    assert outcome.exit_code == 5
    assert "load generator saturated" in outcome.reasons[0]


def test_gate_results_serialise_without_nan() -> None:
    result = GateResult("GET /a", "p95_ms", 100.0, math.nan, False)
    assert result.to_dict()["actual"] is None
