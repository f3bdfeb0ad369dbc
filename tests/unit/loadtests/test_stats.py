from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from loadtests.openmodel import new_histogram
from loadtests.stats import (
    DEFAULT_THRESHOLDS,
    Threshold,
    Verdict,
    Windowed,
    classify,
    compare_percentile,
    compare_runs,
    min_samples_for,
    pooled_run_variance,
    threshold_for,
    weighted_percentile,
    window_bootstrap_se,
)


def latency_windows(
    seed: int,
    *,
    scale: float = 1.0,
    n_windows: int = 30,
    per_window: int = 400,
    window_sd: float = 0.05,
    run_sd: float = 0.0,
    drift: float = 0.0,
    tail: float = 1.0,
) -> Windowed:
    """Lognormal latencies (median ~20 ms) whose level wobbles from window to window, as real
    runs do. ``scale`` multiplies every latency, so it is also the true percentile ratio;
    ``run_sd`` gives the whole run a level of its own (run-to-run variance); ``drift`` makes
    the level rise linearly by that fraction from the first window to the last; ``tail``
    multiplies only the slowest 3 % of each window. Kept to 0.1 ms, about the recorder's
    HdrHistogram precision (3 significant digits)."""
    rng = np.random.default_rng(seed)
    run_level = scale * rng.lognormal(0.0, run_sd)
    windows = []
    for i in range(n_windows):
        level = run_level * (1.0 + drift * i / max(1, n_windows - 1))
        samples = (
            level * rng.lognormal(0.0, window_sd) * rng.lognormal(math.log(20.0), 0.5, per_window)
        )
        cut = np.quantile(samples, 0.97)
        windows.append(np.round(np.where(samples > cut, samples * tail, samples), 1))
    return Windowed.from_samples(windows)


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


LIMIT = Threshold(0.10, 1.0)


@pytest.mark.parametrize(
    ("ratio", "delta", "low", "high", "verdict"),
    [
        (1.25, 5.0, 1.11, 1.4, Verdict.REGRESSION),
        (1.25, 5.0, 0.95, 1.6, Verdict.INCONCLUSIVE),  # material, but could be no change
        (1.05, 1.0, 1.02, 1.08, Verdict.EQUIVALENT),  # real, but within noise
        (1.5, 0.5, 1.3, 1.7, Verdict.EQUIVALENT),  # +50 % of a tiny latency: under 1 ms
        (0.8, -5.0, 0.7, 0.9, Verdict.IMPROVEMENT),
        (0.8, -5.0, 0.7, 1.05, Verdict.INCONCLUSIVE),
    ],
)
def test_a_change_must_be_material_and_real(
    ratio: float, delta: float, low: float, high: float, verdict: Verdict
) -> None:
    assert classify(ratio, delta, low, high, LIMIT) is verdict


def test_each_percentile_has_a_threshold_and_tails_need_more() -> None:
    assert threshold_for(50) == DEFAULT_THRESHOLDS[50.0]
    assert threshold_for(99).relative > threshold_for(95).relative > threshold_for(50).relative
    assert threshold_for(97, {95.0: Threshold(0.2, 3.0)}) == Threshold(0.2, 3.0)


def test_same_distribution_is_equivalent() -> None:
    result = compare_percentile(latency_windows(1), latency_windows(2), 95, name="GET /x")
    assert result.verdict is Verdict.EQUIVALENT, result
    assert abs(result.ratio - 1.0) < result.threshold_relative
    assert result.name == "GET /x"
    assert "within noise" in result.reason
    assert "1 baseline run" in result.method


def test_no_difference_is_rarely_called_a_regression_over_many_seeds() -> None:
    # Runs of the same code, each with a run level of its own (3 % sd) and wobbling windows,
    # compared on the median and p95: a false regression at most a few times in 100.
    false_alarms = 0
    for seed in range(100):
        same = functools.partial(latency_windows, n_windows=10, per_window=300, run_sd=0.03)
        result = compare_percentile(
            same(2 * seed), same(2 * seed + 1), (50, 95)[seed % 2], resamples=200,
            seed=seed, with_diagnostics=False,
        )  # fmt: skip
        false_alarms += result.verdict is Verdict.REGRESSION
    assert false_alarms <= 3


def test_twenty_percent_slower_is_a_regression() -> None:
    for p in (50, 95):
        result = compare_percentile(latency_windows(1, scale=1.2), latency_windows(2), p)
        assert result.verdict is Verdict.REGRESSION, result
        assert result.ci_low > 1.0
        assert result.ratio == pytest.approx(1.2, rel=0.08)
        assert result.delta_ms > 0


def test_twenty_percent_faster_is_an_improvement() -> None:
    result = compare_percentile(latency_windows(1, scale=0.8), latency_windows(2), 95)
    assert result.verdict is Verdict.IMPROVEMENT, result
    assert result.ci_high < 1.0


def test_a_slower_tail_alone_is_found_in_the_tail_only() -> None:
    candidate, baseline = latency_windows(1, tail=1.6), latency_windows(2)
    assert compare_percentile(candidate, baseline, 50).verdict is Verdict.EQUIVALENT
    tail = compare_percentile(candidate, baseline, 99)
    assert tail.verdict is Verdict.REGRESSION, tail


def test_a_drift_within_both_runs_is_not_a_regression() -> None:
    # Both runs slow down by 40 % from start to end (a store filling up, a cache cooling):
    # alike, so no verdict of a change.
    drifting = functools.partial(latency_windows, drift=0.4)
    for p in (50, 95):
        result = compare_percentile(drifting(1), drifting(2), p)
        assert result.verdict is Verdict.EQUIVALENT, result
    # A drift of the candidate alone is a change.
    alone = compare_percentile(latency_windows(1, drift=0.6), latency_windows(2), 50)
    assert alone.verdict is Verdict.REGRESSION, alone


def test_several_baseline_runs_carry_their_run_to_run_variance() -> None:
    # Baseline runs whose levels differ by about 10 % from run to run: a candidate 12 %
    # slower is no further than they are from each other.
    runs = [latency_windows(seed, run_sd=0.1) for seed in (11, 12, 13, 14)]
    levels = [run.percentile(50) for run in runs]
    candidate = latency_windows(1, scale=max(levels) / 20.0 * 1.02)
    one = compare_percentile(candidate, runs[int(np.argmin(levels))], 50)
    several = compare_percentile(candidate, runs, 50)
    assert one.verdict is Verdict.REGRESSION, one
    assert several.verdict is not Verdict.REGRESSION, several
    assert several.baseline_runs == 4
    assert several.run_spread > 0.05
    assert several.ci_high - several.ci_low > 2 * (one.ci_high - one.ci_low)
    assert "4 baseline runs" in several.method
    # ... and a change far beyond their spread is still found.
    slow = compare_percentile(latency_windows(1, scale=1.8), runs, 50)
    assert slow.verdict is Verdict.REGRESSION, slow


def test_the_run_to_run_variance_is_pooled_over_the_metrics() -> None:
    # Three baseline runs on a machine whose speed varies by about 10 % from run to run: it
    # shows on three endpoints; on the fourth the runs agree by chance. A candidate 15 %
    # slower there is what the machine does, not a regression.
    levels = (0.9, 1.0, 1.1)
    runs = [
        {
            **{f"GET /{e}": latency_windows(10 * k + i, scale=level) for i, e in enumerate("abc")},
            "GET /lucky": latency_windows(10 * k + 5),
        }
        for k, level in enumerate(levels)
    ]
    candidate = {
        **{f"GET /{e}": latency_windows(90 + i) for i, e in enumerate("abc")},
        "GET /lucky": latency_windows(95, scale=1.15),
    }
    pooled = pooled_run_variance(runs, sorted(runs[0]), 50)
    assert pooled is not None
    assert pooled > 0.5 * float(np.var(np.log(levels), ddof=1))
    lucky = compare_percentile(candidate["GET /lucky"], [r["GET /lucky"] for r in runs], 50)
    assert lucky.verdict is Verdict.REGRESSION, "alone, its runs look noiseless"
    by_name = {r.name: r for r in compare_runs(candidate, runs, percentiles=(50,))}
    assert by_name["GET /lucky"].verdict is Verdict.EQUIVALENT, by_name["GET /lucky"]
    assert pooled_run_variance(runs[:1], ["GET /a"], 50) is None


def test_one_baseline_run_takes_its_run_to_run_noise_from_earlier_a_a_pairs() -> None:
    # A candidate 15 % slower on one endpoint: beyond the threshold and the windows' noise,
    # but within what two runs of the same code differ by when runs stray by 10 % (sd).
    candidate = {"GET /a": latency_windows(1, scale=1.15), "e2e": latency_windows(3)}
    baseline = {"GET /a": latency_windows(2), "e2e": latency_windows(4)}
    alone = compare_runs(candidate, baseline, percentiles=(50,))[0]
    assert alone.verdict is Verdict.REGRESSION, alone
    assert "1 baseline run" in alone.method
    assert "A/A" not in alone.method
    noisy, e2e = compare_runs(
        candidate, baseline, percentiles=(50,), run_noise={50.0: 0.1},
        resolution_ms={"e2e": 500},
    )  # fmt: skip
    assert noisy.verdict is Verdict.INCONCLUSIVE, noisy
    assert noisy.ci_high - noisy.ci_low > 2 * (alone.ci_high - alone.ci_low)
    assert "earlier A/A pairs" in noisy.method
    assert "A/A" not in e2e.method, "a coarse metric takes no prior"
    # With several baseline runs their own spread counts, not the prior.
    runs = [baseline, {"GET /a": latency_windows(5), "e2e": latency_windows(6)}]
    several = compare_runs(candidate, runs, percentiles=(50,), run_noise={50.0: 0.1})[0]
    assert "2 baseline runs" in several.method
    # ... and a change far beyond the noise is still found.
    slow = compare_runs(
        {"GET /a": latency_windows(1, scale=1.8)}, {"GET /a": latency_windows(2)},
        percentiles=(50,), run_noise={50.0: 0.1},
    )[0]  # fmt: skip
    assert slow.verdict is Verdict.REGRESSION, slow


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
    short_run = compare_percentile(
        latency_windows(1), [latency_windows(2), latency_windows(3, n_windows=3)], 95
    )
    assert "baseline run 2 has 3 windows" in short_run.reason


def test_same_seed_gives_the_same_interval() -> None:
    a, b = latency_windows(1, scale=1.05), latency_windows(2)
    first, again = compare_percentile(a, b, 99, seed=3), compare_percentile(a, b, 99, seed=3)
    other = compare_percentile(a, b, 99, seed=4)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_the_bootstrap_resamples_whole_windows() -> None:
    # Two windows of one repeated value each: resampling windows, a replicate's median is
    # one of the two values, so log-medians are 0 or log(3) apart and the standard error is
    # about half that gap; resampling single requests it would be close to zero.
    data = Windowed.from_samples([[10.0] * 50, [30.0] * 50])
    se = window_bootstrap_se(data, 50, resamples=500, rng=np.random.default_rng(0))
    assert se == pytest.approx(math.log(3.0) / 2, rel=0.15)


def test_window_to_window_wobble_widens_the_interval() -> None:
    steady = compare_percentile(
        latency_windows(1, window_sd=0.0), latency_windows(2, window_sd=0.0), 95
    )
    wobbling = compare_percentile(
        latency_windows(1, window_sd=0.2), latency_windows(2, window_sd=0.2), 95
    )
    assert wobbling.ci_high - wobbling.ci_low > 1.5 * (steady.ci_high - steady.ci_low)


def test_confidence_interval_covers_the_true_ratio_at_about_the_nominal_rate() -> None:
    true_ratio, repetitions = 1.2, 100
    covered = 0
    for rep in range(repetitions):
        result = compare_percentile(
            latency_windows(2 * rep, scale=true_ratio, n_windows=20, per_window=300, window_sd=0.1),
            latency_windows(2 * rep + 1, n_windows=20, per_window=300, window_sd=0.1),
            95,
            resamples=300,
            seed=rep,
            with_diagnostics=False,
        )
        covered += result.ci_low <= true_ratio <= result.ci_high
    assert 0.85 <= covered / repetitions <= 1.0


def test_the_confidence_holds_for_all_comparisons_of_a_run_together() -> None:
    metrics = {name: latency_windows(seed) for seed, name in enumerate(("GET /a", "GET /b"))}
    results = compare_runs(metrics, metrics, percentiles=(50, 95), confidence=0.9)
    assert [r.confidence for r in results] == pytest.approx([1 - 0.1 / 4] * 4)


def test_a_metric_measured_coarsely_needs_a_change_beyond_its_resolution() -> None:
    # e2e latency is found by polling: 20 % of a ~20 ms median is under what polls resolve.
    metrics = {"e2e": latency_windows(1, scale=1.2), "GET /a": latency_windows(3, scale=1.2)}
    base = {"e2e": latency_windows(2), "GET /a": latency_windows(4)}
    by_name = {
        r.name: r
        for r in compare_runs(metrics, base, percentiles=(50,), resolution_ms={"e2e": 500.0})
    }
    assert by_name["GET /a"].verdict is Verdict.REGRESSION
    assert by_name["e2e"].verdict is Verdict.EQUIVALENT
    assert by_name["e2e"].threshold_ms == 500.0


def test_diagnostics_are_reported_but_do_not_decide() -> None:
    # 30k samples a side and a 2 % shift: KS and Mann-Whitney call it highly significant,
    # yet a 2 % change is under the 10 % threshold, so the verdict is EQUIVALENT.
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
    assert refused["run_spread"] is None
