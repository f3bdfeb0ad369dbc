"""Baseline comparison: is the candidate run's latency percentile different from the baseline's?

A verdict asks two questions of the *ratio* of a percentile (candidate / baseline), never a
bare p-value:

1. **Is the difference material?** A per-percentile threshold (:class:`Threshold`, e.g. 10 %
   *and* 1 ms on a p50) below which a difference is "within noise" -- EQUIVALENT whatever its
   interval. With several baseline runs the relative threshold is at least their own spread
   (how far a run of the same code strays from their geometric mean, about two standard
   deviations of it): a candidate no further from the baseline than that is noise.
2. **Is it real?** A confidence interval on the ratio that carries both kinds of variance:

   - *within a run*: a block bootstrap over time windows (``scipy.stats.bootstrap`` over
     window indices). Latency samples inside one window are correlated (a GC pause, a slow
     disk slows all of them), so whole windows are resampled, never single requests; the
     selected windows are treated as exchangeable, so callers pass steady-state windows.
   - *between runs*: two runs of the same code differ by more than their windows do (the
     machine, caches, the store's state). With two or more baseline runs that run-to-run
     variance is estimated from them (the variance of their log percentiles beyond what their
     own bootstraps explain, pooled over the metrics by :func:`compare_runs`: a few runs
     tell the machine's noise far better over several endpoints than over one) and added to
     both sides. With one baseline run it cannot be measured: it is then taken from A/A
     pairs measured before, if given (``run_noise``, fitted by ``bookify bench verdict``),
     and otherwise the threshold is the only guard against it; the method says which.

   The interval is normal on the log ratio: ``log(c / b) +- z * sqrt(se_c^2 + tau^2 +
   (mean se_b^2 + tau^2) / m)`` for ``m`` baseline runs, bootstrap standard errors ``se``
   and run-to-run variance ``tau^2``.

Verdicts: REGRESSION when the change is material and slower and the interval lies above 1;
IMPROVEMENT likewise faster and below 1; EQUIVALENT when not material; INCONCLUSIVE when
material but the interval includes no change. :func:`compare_runs` makes many comparisons
and one REGRESSION fails a run, so its ``confidence`` holds for the run as a whole: each of
its ``k`` comparisons uses ``1 - (1 - confidence) / k`` (Bonferroni).

A percentile estimated from too little data is refused (INCONCLUSIVE with a reason): each
run needs at least ``10 / (1 - p)`` samples (200 for p95, 1000 for p99) and ``min_windows``
windows. Kolmogorov-Smirnov and Mann-Whitney U are computed on the pooled samples as
diagnostics for the report; they never decide.

Everything here is a pure function of its inputs; randomness comes from a seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as scipy_stats

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
# Diagnostics on histograms expand counts into samples; beyond this many, a seeded subsample.
_DIAGNOSTIC_CAP = 20_000
_EPS = 1e-9


class Verdict(StrEnum):
    REGRESSION = "REGRESSION"
    IMPROVEMENT = "IMPROVEMENT"
    EQUIVALENT = "EQUIVALENT"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Windowed:
    """One metric split into time windows: per window, sorted distinct values and their counts.

    Built from raw per-window samples (``from_samples``) or HdrHistograms
    (``from_histograms``); both end up in the same compact form, so the bootstrap does not
    care which one recorded the data.
    """

    values: tuple[FloatArray, ...]
    counts: tuple[IntArray, ...]

    @classmethod
    def from_samples(cls, windows: Iterable[ArrayLike]) -> Windowed:
        values: list[FloatArray] = []
        counts: list[IntArray] = []
        for window in windows:
            arr = np.asarray(window, dtype=np.float64).ravel()
            if arr.size == 0:
                continue
            uniq, cnt = np.unique(arr, return_counts=True)
            values.append(uniq.astype(np.float64))
            counts.append(cnt.astype(np.int64))
        return cls(tuple(values), tuple(counts))

    @classmethod
    def from_histograms(cls, histograms: Iterable[Any], *, scale: float = 1e-3) -> Windowed:
        """From HdrHistograms (microseconds by default; ``scale`` converts, to ms by default)."""
        values: list[FloatArray] = []
        counts: list[IntArray] = []
        for histogram in histograms:
            vals, cnts = histogram_arrays(histogram)
            if cnts.size == 0:
                continue
            values.append(vals * scale)
            counts.append(cnts)
        return cls(tuple(values), tuple(counts))

    @classmethod
    def merge(cls, runs: Iterable[Windowed]) -> Windowed:
        """The windows of several runs as one (for diagnostics on pooled samples)."""
        runs = list(runs)
        return cls(
            tuple(v for run in runs for v in run.values),
            tuple(c for run in runs for c in run.counts),
        )

    @property
    def n_windows(self) -> int:
        return len(self.counts)

    @property
    def total(self) -> int:
        return int(sum(int(c.sum()) for c in self.counts))

    def pooled(self) -> tuple[FloatArray, IntArray]:
        """All windows merged: sorted distinct values and their counts."""
        if not self.counts:
            return np.empty(0, np.float64), np.empty(0, np.int64)
        vals = np.concatenate(self.values)
        cnts = np.concatenate(self.counts)
        uniq, inverse = np.unique(vals, return_inverse=True)
        merged = np.bincount(inverse, weights=cnts, minlength=uniq.size)
        return uniq, np.rint(merged).astype(np.int64)

    def percentile(self, p: float) -> float:
        vals, cnts = self.pooled()
        return weighted_percentile(vals, cnts, p)


def histogram_arrays(histogram: Any) -> tuple[FloatArray, IntArray]:
    """An HdrHistogram's recorded values (highest equivalent value per bucket) and counts."""
    counts = np.ctypeslib.as_array(histogram.counts)
    nonzero = np.flatnonzero(counts)
    values = np.fromiter(
        (
            histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i)))
            for i in nonzero
        ),
        dtype=np.float64,
        count=nonzero.size,
    )
    return values, counts[nonzero].astype(np.int64)


def _rank(p: float, n: float | FloatArray) -> Any:
    # Inverted-CDF rank: the smallest value with at least ceil(p% of n) samples at or below it.
    return np.maximum(1.0, np.ceil(np.asarray(n) * (p / 100.0) - _EPS))


def weighted_percentile(values: FloatArray, counts: IntArray, p: float) -> float:
    """Percentile ``p`` (0-100] of sorted ``values`` with ``counts`` (NaN when empty)."""
    total = int(counts.sum())
    if total == 0:
        return math.nan
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, float(_rank(p, total)), side="left"))
    return float(values[min(index, values.size - 1)])


def min_samples_for(p: float, factor: float = 10.0) -> int:
    """Samples needed before percentile ``p`` is worth estimating: ``factor / (1 - p)``."""
    tail = 1.0 - p / 100.0
    if tail <= 0:
        return 2**62
    return math.ceil(factor / tail - _EPS)


@dataclass(frozen=True)
class Threshold:
    """The smallest change worth a verdict: ``relative`` (0.10 = 10 %) *and* ``ms``."""

    relative: float
    ms: float

    def describe(self) -> str:
        return f"{self.relative:.0%} and {self.ms:g} ms"


# Tails are noisier than medians, so they need a larger change before it counts.
DEFAULT_THRESHOLDS: Mapping[float, Threshold] = {
    50.0: Threshold(0.10, 1.0),
    90.0: Threshold(0.15, 2.0),
    95.0: Threshold(0.15, 2.0),
    99.0: Threshold(0.25, 5.0),
}


def threshold_for(
    p: float, thresholds: Mapping[float, Threshold] = DEFAULT_THRESHOLDS
) -> Threshold:
    """The threshold of percentile ``p``: its own, else the nearest listed percentile's."""
    if p in thresholds:
        return thresholds[p]
    if not thresholds:
        return DEFAULT_THRESHOLDS[min(DEFAULT_THRESHOLDS, key=lambda q: abs(q - p))]
    return thresholds[min(thresholds, key=lambda q: abs(q - p))]


class _WindowPercentile:
    """Percentile ``p`` of the merged samples of a multiset of windows, vectorised.

    Called by ``scipy.stats.bootstrap`` with resampled window *indices* (shape
    ``(..., k)``): each row becomes a count per window, and the merged percentile is read
    off a table of cumulative counts. The merged percentile always lies between the smallest
    and largest per-window percentile, so only distinct values in that range are tabulated,
    which keeps the work a small matrix product.
    """

    def __init__(self, data: Windowed, p: float) -> None:
        self.p = p
        per_window = np.array(
            [weighted_percentile(v, c, p) for v, c in zip(data.values, data.counts, strict=True)]
        )
        lo, hi = float(per_window.min()), float(per_window.max())
        self.grid = np.unique(np.concatenate([v[(v >= lo) & (v <= hi)] for v in data.values]))
        k = data.n_windows
        # cumulative[i, j]: samples of window i at or below grid[j].
        self.cumulative = np.empty((k, self.grid.size), dtype=np.float64)
        self.sizes = np.empty(k, dtype=np.float64)
        for i, (v, c) in enumerate(zip(data.values, data.counts, strict=True)):
            running = np.concatenate([[0], np.cumsum(c)])
            self.cumulative[i] = running[np.searchsorted(v, self.grid, side="right")]
            self.sizes[i] = running[-1]

    def of_weights(self, weights: FloatArray) -> FloatArray:
        """The merged percentile for each row of per-window multiplicities."""
        merged = weights @ self.cumulative
        target = _rank(self.p, weights @ self.sizes)
        reached = merged >= target[..., None]
        index = np.where(reached.any(axis=-1), reached.argmax(axis=-1), self.grid.size - 1)
        return np.asarray(self.grid[index], dtype=np.float64)

    def __call__(self, indices: NDArray[Any], axis: int = -1) -> FloatArray:
        rows = np.moveaxis(np.asarray(indices, dtype=np.int64), axis, -1)
        k, shape = self.sizes.size, rows.shape[:-1]
        flat = rows.reshape(-1, rows.shape[-1])
        offsets = (np.arange(flat.shape[0]) * k)[:, None]
        weights = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * k)
        merged = self.of_weights(weights.reshape(flat.shape[0], k).astype(np.float64))
        return np.log(merged).reshape(shape)


def window_bootstrap_se(
    data: Windowed, p: float, *, resamples: int, rng: np.random.Generator
) -> float:
    """Standard error of ``log(percentile p)`` by a block bootstrap over whole windows."""
    statistic = _WindowPercentile(data, p)
    result = scipy_stats.bootstrap(
        (np.arange(data.n_windows),),
        statistic,
        n_resamples=resamples,
        vectorized=True,
        method="percentile",
        batch=256,
        rng=rng,
    )
    return float(result.standard_error)


@dataclass(frozen=True)
class Diagnostics:
    """Distribution tests on pooled samples, shown for context; they never decide a verdict."""

    ks_statistic: float
    ks_pvalue: float
    mannwhitney_u: float
    mannwhitney_pvalue: float


METHOD_ONE_RUN = (
    "block bootstrap over time windows (run-to-run variance not measured: 1 baseline run)"
)
METHOD_RUNS = "block bootstrap over time windows + run-to-run variance of {m} baseline runs"
METHOD_PRIOR = (
    "block bootstrap over time windows + run-to-run variance of earlier A/A pairs "
    "([baseline.run_noise]; 1 baseline run)"
)


@dataclass(frozen=True)
class Comparison:
    """One percentile of one metric, candidate against baseline: the effect, its interval
    and what they mean (see the module docstring)."""

    name: str
    percentile: float
    verdict: Verdict
    reason: str
    baseline_value: float
    candidate_value: float
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    threshold_relative: float  # after the baseline runs' spread raised it, if it did
    threshold_ms: float
    baseline_runs: int
    run_spread: float  # how far a run of the same code strays, about 2 sd (NaN: one run)
    method: str
    baseline_samples: int
    candidate_samples: int
    baseline_windows: int
    candidate_windows: int
    diagnostics: Diagnostics | None

    @property
    def delta_ms(self) -> float:
        return self.candidate_value - self.baseline_value

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["delta_ms"] = self.delta_ms
        safe: dict[str, Any] = _json_safe(out)
        return safe


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _expand(data: Windowed, rng: np.random.Generator) -> FloatArray:
    vals, cnts = data.pooled()
    total = int(cnts.sum())
    if total <= _DIAGNOSTIC_CAP:
        return np.repeat(vals, cnts)
    return np.sort(rng.choice(vals, size=_DIAGNOSTIC_CAP, p=cnts / total))


def diagnostics(candidate: Windowed, baseline: Windowed, *, seed: int = 0) -> Diagnostics | None:
    """Two-sample KS and Mann-Whitney U on the pooled samples (subsampled when large)."""
    rng = np.random.default_rng(seed)
    cand, base = _expand(candidate, rng), _expand(baseline, rng)
    if cand.size == 0 or base.size == 0:
        return None
    ks = scipy_stats.ks_2samp(cand, base)
    mw = scipy_stats.mannwhitneyu(cand, base, alternative="two-sided")
    return Diagnostics(float(ks.statistic), float(ks.pvalue), float(mw.statistic), float(mw.pvalue))


def classify(
    ratio: float, delta_ms: float, ci_low: float, ci_high: float, threshold: Threshold
) -> Verdict:
    """Material (beyond the threshold, both relative and in ms) *and* real (interval off 1)."""
    slower = ratio >= 1.0 + threshold.relative and delta_ms >= threshold.ms
    faster = ratio <= 1.0 / (1.0 + threshold.relative) and -delta_ms >= threshold.ms
    if not (slower or faster):
        return Verdict.EQUIVALENT
    if slower and ci_low > 1.0:
        return Verdict.REGRESSION
    if faster and ci_high < 1.0:
        return Verdict.IMPROVEMENT
    return Verdict.INCONCLUSIVE


def _at_least(threshold: Threshold, ms: float) -> Threshold:
    return threshold if threshold.ms >= ms else Threshold(threshold.relative, ms)


def _runs(data: Windowed | Sequence[Windowed]) -> tuple[Windowed, ...]:
    return (data,) if isinstance(data, Windowed) else tuple(data)


def compare_percentile(
    candidate: Windowed,
    baseline: Windowed | Sequence[Windowed],
    percentile: float,
    *,
    name: str = "",
    threshold: Threshold | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_windows: int = 5,
    min_samples_factor: float = 10.0,
    with_diagnostics: bool = True,
    run_variance: float | None = None,
    run_noise: float | None = None,
) -> Comparison:
    """Compare percentile ``percentile`` (e.g. 95) of ``candidate`` against ``baseline``:
    one run, or several runs of the same code whose spread the verdict then uses.

    ``run_variance``: the variance of a run's log percentile from run to run, when known
    better than these baseline runs alone tell (:func:`compare_runs` pools it over the
    metrics); by default, theirs. ``run_noise``: the standard deviation of a run's log
    percentile from run to run (beyond its windows), known from A/A pairs; used with one
    baseline run, whose own spread cannot be measured."""
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    runs = _runs(baseline)
    if not runs:
        raise ValueError("no baseline run to compare with")
    limit = threshold or threshold_for(percentile)
    rng = np.random.default_rng(seed)
    pooled = Windowed.merge(runs)
    run_values = np.array([run.percentile(percentile) for run in runs])
    m = len(runs)
    positive = bool(np.all(run_values > 0))
    base_value = float(np.exp(np.mean(np.log(run_values)))) if positive else math.nan
    cand_value = candidate.percentile(percentile)
    ratio = cand_value / base_value if base_value > 0 else math.nan
    if m > 1 and positive:
        var_runs = (
            run_variance if run_variance is not None else float(np.var(np.log(run_values), ddof=1))
        )
        # How far a run of the same code strays from the baseline (about 2 sd of it).
        spread = math.exp(2.0 * math.sqrt(var_runs * (1.0 + 1.0 / m))) - 1.0
    else:
        var_runs, spread = 0.0, math.nan
    prior = m == 1 and bool(run_noise)
    relative = max(limit.relative, spread) if m > 1 and positive else limit.relative
    effective = Threshold(relative, limit.ms)
    diag = diagnostics(candidate, pooled, seed=seed) if with_diagnostics else None

    def result(verdict: Verdict, reason: str, low: float, high: float) -> Comparison:
        return Comparison(
            name=name,
            percentile=percentile,
            verdict=verdict,
            reason=reason,
            baseline_value=base_value,
            candidate_value=cand_value,
            ratio=ratio,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            threshold_relative=effective.relative,
            threshold_ms=effective.ms,
            baseline_runs=m,
            run_spread=spread,
            method=(
                METHOD_RUNS.format(m=m) if m > 1 else METHOD_PRIOR if prior else METHOD_ONE_RUN
            ),
            baseline_samples=pooled.total,
            candidate_samples=candidate.total,
            baseline_windows=pooled.n_windows,
            candidate_windows=candidate.n_windows,
            diagnostics=diag,
        )

    needed = min_samples_for(percentile, min_samples_factor)
    sides = [("candidate", candidate)] + [
        ("baseline" if m == 1 else f"baseline run {i + 1}", run) for i, run in enumerate(runs)
    ]
    shortfalls = [
        f"{side} has {data.total} samples, p{percentile:g} needs >= {needed}"
        for side, data in sides
        if data.total < needed
    ] + [
        f"{side} has {data.n_windows} windows, needs >= {min_windows}"
        for side, data in sides
        if data.n_windows < min_windows
    ]
    if shortfalls:
        return result(
            Verdict.INCONCLUSIVE, "too little data: " + "; ".join(shortfalls), math.nan, math.nan
        )
    if not (positive and cand_value > 0):
        return result(Verdict.INCONCLUSIVE, "a percentile is zero", math.nan, math.nan)

    se_c = window_bootstrap_se(candidate, percentile, resamples=resamples, rng=rng)
    se_b = np.array(
        [window_bootstrap_se(run, percentile, resamples=resamples, rng=rng) for run in runs]
    )
    within_b = float(np.mean(se_b**2))
    # Run-to-run variance: what the baseline runs differ by beyond their own bootstraps, or
    # with one run, what A/A pairs did.
    tau2 = float(run_noise or 0.0) ** 2 if prior else max(0.0, var_runs - within_b)
    se = math.sqrt(se_c**2 + tau2 + (within_b + tau2) / m)
    z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
    log_ratio = math.log(ratio)
    low, high = math.exp(log_ratio - z * se), math.exp(log_ratio + z * se)
    delta = cand_value - base_value
    verdict = classify(ratio, delta, low, high, effective)
    effect = f"x{ratio:.2f} ({delta:+.1f} ms)"
    reason = {
        Verdict.REGRESSION: f"{effect} beyond {effective.describe()}, CI above 1",
        Verdict.IMPROVEMENT: f"{effect} beyond {effective.describe()}, CI below 1",
        Verdict.EQUIVALENT: f"within noise: {effect} under {effective.describe()}",
        Verdict.INCONCLUSIVE: (
            f"{effect} beyond {effective.describe()}, but its CI "
            f"[{low:.2f}, {high:.2f}] includes no change"
        ),
    }[verdict]
    if m > 1 and relative > limit.relative:
        reason += f" (threshold raised to the baseline runs' spread {spread:.0%})"
    return result(verdict, reason, low, high)


def compare_runs(
    candidate: Mapping[str, Windowed],
    baseline: Mapping[str, Windowed] | Sequence[Mapping[str, Windowed]],
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    thresholds: Mapping[float, Threshold] = DEFAULT_THRESHOLDS,
    resolution_ms: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_windows: int = 5,
    run_noise: Mapping[float, float] | None = None,
) -> list[Comparison]:
    """Every (metric, percentile) present in either run; a metric missing on one side is
    INCONCLUSIVE rather than silently skipped. ``baseline`` is one run's metrics or several
    runs'. ``resolution_ms`` raises a metric's threshold in ms to what its measurement can
    resolve; such a coarse metric takes no ``run_noise`` (per percentile, the nearest
    listed; fitted on request latencies). ``confidence`` is for the whole set (Bonferroni
    over the comparisons)."""
    resolution = resolution_ms or {}
    runs = [baseline] if isinstance(baseline, Mapping) else list(baseline)
    empty = Windowed((), ())
    names = sorted(set(candidate).union(*runs))
    each = 1.0 - (1.0 - confidence) / max(1, len(names) * len(percentiles))
    fine = [name for name in names if name not in resolution]
    return [
        compare_percentile(
            candidate.get(name, empty),
            [run.get(name, empty) for run in runs],
            p,
            name=name,
            threshold=_at_least(threshold_for(p, thresholds), resolution.get(name, 0.0)),
            confidence=each,
            resamples=resamples,
            seed=seed,
            min_windows=min_windows,
            run_variance=None if name in resolution else pooled_run_variance(runs, fine, p),
            run_noise=None if name in resolution or not run_noise else _nearest(run_noise, p),
        )
        for name in names
        for p in percentiles
    ]


def _nearest(by_percentile: Mapping[float, float], p: float) -> float:
    return by_percentile[min(by_percentile, key=lambda q: abs(q - p))]


def pooled_run_variance(
    runs: Sequence[Mapping[str, Windowed]], names: Sequence[str], p: float
) -> float | None:
    """The run-to-run variance of log percentile ``p``, pooled over the metrics ``names``
    that every run measured well enough: the machine's noise slows every endpoint, and a
    handful of runs tells it far better over several metrics than over one. None with fewer
    than two runs or no such metric."""
    if len(runs) < 2:
        return None
    needed = min_samples_for(p)
    variances = []
    for name in names:
        values = [run[name].percentile(p) for run in runs if name in run]
        if len(values) == len(runs) and all(
            run[name].total >= needed and value > 0 for run, value in zip(runs, values, strict=True)
        ):
            variances.append(float(np.var(np.log(values), ddof=1)))
    return float(np.mean(variances)) if variances else None
