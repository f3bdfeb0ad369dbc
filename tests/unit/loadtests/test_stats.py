from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from loadtests.openmodel import new_histogram
from loadtests.stats import (
    Verdict,
    Windowed,
    bootstrap_percentiles,
    classify,
    compare_percentile,
    compare_runs,
    min_samples_for,
    weighted_percentile,
)


def latency_windows(
    seed: int,
    *,
    scale: float = 1.0,
    n_windows: int = 30,
    per_window: int = 400,
    window_sd: float = 0.05,
) -> Windowed:
    """Lognormal latencies (median ~20 ms) whose level drifts from window to window, as real
    runs do; ``scale`` multiplies every latency, so it is also the true percentile ratio."""
    rng = np.random.default_rng(seed)
    return Windowed.from_samples(
        scale * rng.lognormal(0.0, window_sd) * rng.lognormal(math.log(20.0), 0.5, per_window)
        for _ in range(n_windows)
    )


def test_percentile_of_one_to_hundred_is_the_inverted_cdf() -> None:
    values = np.arange(1.0, 101.0)
    counts = np.ones(100, dtype=np.int64)
    assert weighted_percentile(values, counts, 50) == 50
    assert weighted_percentile(values, counts, 95) == 95
    assert weighted_percentile(values, counts, 99.5) == 100
    assert math.isnan(weighted_percentile(values[:0], counts[:0], 50))


def test_counts_weigh_values_like_repeated_samples() -> None:
    data = Windowed.from_samples([[1.0, 1.0, 1.0], [2.0]])
    assert (data.n_windows, data.total) == (2, 4)
    assert data.percentile(75) == 1.0
    assert data.percentile(76) == 2.0


def test_histogram_windows_agree_with_raw_samples_to_hdr_precision() -> None:
    rng = np.random.default_rng(7)
    raw = [rng.lognormal(math.log(20.0), 0.5, 500) for _ in range(3)]
    histograms = []
    for window in raw:
        histogram = new_histogram()
        for ms in window:
            histogram.record_value(int(ms * 1000))
        histograms.append(histogram)
    from_hdr, from_raw = Windowed.from_histograms(histograms), Windowed.from_samples(raw)
    for p in (50, 95, 99):
        assert from_hdr.percentile(p) == pytest.approx(from_raw.percentile(p), rel=2e-3)


def test_min_samples_grow_with_the_percentile() -> None:
    assert (min_samples_for(50), min_samples_for(95), min_samples_for(99)) == (20, 200, 1000)


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (1.11, 1.3, Verdict.REGRESSION),
        (0.7, 0.89, Verdict.IMPROVEMENT),
        (0.95, 1.05, Verdict.EQUIVALENT),
        (0.9, 1.1, Verdict.EQUIVALENT),
        (1.05, 1.2, Verdict.INCONCLUSIVE),
        (0.8, 1.2, Verdict.INCONCLUSIVE),
    ],
)
def test_verdict_follows_where_the_interval_lies(low: float, high: float, verdict: Verdict) -> None:
    assert classify(low, high, 0.10) is verdict


def test_same_distribution_is_equivalent() -> None:
    result = compare_percentile(latency_windows(1), latency_windows(2), 95, name="GET /x")
    assert result.verdict is Verdict.EQUIVALENT, result
    assert 0.9 <= result.ci_low <= 1.0 <= result.ci_high <= 1.1
    assert result.name == "GET /x"


def test_twenty_percent_slower_p95_is_a_regression() -> None:
    result = compare_percentile(latency_windows(1, scale=1.2), latency_windows(2), 95)
    assert result.verdict is Verdict.REGRESSION, result
    assert result.ci_low > 1.1
    assert result.ratio == pytest.approx(1.2, rel=0.08)


def test_twenty_percent_faster_p95_is_an_improvement() -> None:
    result = compare_percentile(latency_windows(1, scale=0.8), latency_windows(2), 95)
    assert result.verdict is Verdict.IMPROVEMENT, result
    assert result.ci_high < 0.9


def test_a_shift_inside_the_tolerance_but_not_resolvable_is_inconclusive() -> None:
    noisy = functools.partial(latency_windows, n_windows=6, per_window=400, window_sd=0.25)
    result = compare_percentile(noisy(1, scale=1.1), noisy(2), 95)
    assert result.verdict is Verdict.INCONCLUSIVE, result
    assert "crosses the tolerance band" in result.reason


def test_too_few_samples_for_the_percentile_is_refused() -> None:
    # 10 windows x 15 = 150 samples: enough for p50 (20), not for p95 (200) or p99 (1000).
    small = latency_windows(1, n_windows=10, per_window=15)
    base = latency_windows(2)
    refused = compare_percentile(small, base, 95)
    assert refused.verdict is Verdict.INCONCLUSIVE
    assert "candidate has 150 samples, p95 needs >= 200" in refused.reason
    assert math.isnan(refused.ci_low)
    assert "too little data" not in compare_percentile(small, base, 50).reason


def test_too_few_windows_is_refused_however_many_samples() -> None:
    result = compare_percentile(
        latency_windows(1, n_windows=4, per_window=5000), latency_windows(2), 95
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "candidate has 4 windows, needs >= 5" in result.reason


def test_same_seed_gives_the_same_interval() -> None:
    a, b = latency_windows(1, scale=1.05), latency_windows(2)
    first, again = compare_percentile(a, b, 99, seed=3), compare_percentile(a, b, 99, seed=3)
    other = compare_percentile(a, b, 99, seed=4)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_bootstrap_resamples_whole_windows() -> None:
    # Two windows, each holding a single repeated value: any replicate's median is one of
    # the two values, never something in between, and both occur.
    data = Windowed.from_samples([[10.0] * 50, [30.0] * 50])
    replicates = bootstrap_percentiles(data, 50, resamples=500, rng=np.random.default_rng(0))
    assert set(np.unique(replicates)) == {10.0, 30.0}


def test_window_to_window_drift_widens_the_interval() -> None:
    # Resampling samples would ignore the drift between windows; resampling windows must not.
    steady = compare_percentile(
        latency_windows(1, window_sd=0.0), latency_windows(2, window_sd=0.0), 95
    )
    drifting = compare_percentile(
        latency_windows(1, window_sd=0.2), latency_windows(2, window_sd=0.2), 95
    )
    assert drifting.ci_high - drifting.ci_low > 1.5 * (steady.ci_high - steady.ci_low)


def test_confidence_interval_covers_the_true_ratio_at_about_the_nominal_rate() -> None:
    true_ratio, repetitions = 1.2, 200
    covered = 0
    for rep in range(repetitions):
        result = compare_percentile(
            latency_windows(2 * rep, scale=true_ratio, n_windows=20, per_window=300, window_sd=0.1),
            latency_windows(2 * rep + 1, n_windows=20, per_window=300, window_sd=0.1),
            95,
            resamples=1000,
            seed=rep,
            with_diagnostics=False,
        )
        covered += result.ci_low <= true_ratio <= result.ci_high
    assert 0.88 <= covered / repetitions <= 0.99


def test_diagnostics_are_reported_but_do_not_decide() -> None:
    # 30k samples a side and a 2 % shift: KS and Mann-Whitney call it highly significant,
    # yet a 2 % change is inside the 10 % tolerance, so the verdict is EQUIVALENT.
    big = functools.partial(latency_windows, n_windows=30, per_window=1000, window_sd=0.0)
    result = compare_percentile(big(1, scale=1.02), big(2), 50)
    assert result.diagnostics is not None
    assert result.diagnostics.mannwhitney_pvalue < 0.01
    assert result.verdict is Verdict.EQUIVALENT


def test_a_metric_missing_from_one_run_is_inconclusive_not_skipped() -> None:
    results = compare_runs(
        {"GET /a": latency_windows(1), "GET /new": latency_windows(3)},
        {"GET /a": latency_windows(2)},
        percentiles=(95,),
    )
    by_name = {r.name: r for r in results}
    assert by_name["GET /a"].verdict is Verdict.EQUIVALENT
    assert by_name["GET /new"].verdict is Verdict.INCONCLUSIVE
    assert "baseline has 0 samples" in by_name["GET /new"].reason


def test_comparison_serialises_without_nan() -> None:
    refused = compare_percentile(Windowed((), ()), latency_windows(2), 95).to_dict()
    assert refused["verdict"] == "INCONCLUSIVE"
    assert refused["ci_low"] is None
    assert refused["ratio"] is None
