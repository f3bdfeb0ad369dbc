"""Baseline comparison: is the candidate run's latency percentile different from the baseline's?

The verdict comes from a confidence interval on the *ratio* of a percentile (candidate /
baseline), never from a bare p-value. The interval is a block bootstrap over time windows:
latency samples inside one window are correlated (a GC pause, a rebalance, a slow disk slows
all of them), so resampling individual samples would pretend there is far more information
than there is and give intervals that are too narrow. Whole windows are resampled instead,
with replacement, independently for each run (the non-overlapping block bootstrap); this
treats the selected windows as exchangeable, so callers pass steady-state windows only.

Verdict against a tolerance ``tol`` (default 10 %), for a CI ``[lo, hi]`` of the ratio:

- ``lo > 1 + tol``                   -> REGRESSION (slower beyond the tolerance)
- ``hi < 1 - tol``                   -> IMPROVEMENT
- ``1 - tol <= lo`` and ``hi <= 1 + tol`` -> EQUIVALENT (any difference is within tolerance)
- otherwise                          -> INCONCLUSIVE (the data cannot tell)

A percentile estimated from too little data is refused (INCONCLUSIVE with a reason): each
side needs at least ``10 / (1 - p)`` samples (200 for p95, 1000 for p99) and ``min_windows``
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


def bootstrap_percentiles(
    data: Windowed, p: float, *, resamples: int, rng: np.random.Generator
) -> FloatArray:
    """``resamples`` block-bootstrap replicates of percentile ``p``, resampling whole windows.

    Each replicate draws ``n_windows`` windows with replacement (as multinomial counts per
    window) and takes the percentile of their merged samples. The merged percentile always
    lies between the smallest and largest per-window percentile, so only distinct values in
    that range are tabulated, which keeps the work a small matrix product.
    """
    k = data.n_windows
    if k == 0:
        return np.full(resamples, math.nan)
    per_window = np.array(
        [weighted_percentile(v, c, p) for v, c in zip(data.values, data.counts, strict=True)]
    )
    lo, hi = float(per_window.min()), float(per_window.max())
    grid = np.unique(np.concatenate([v[(v >= lo) & (v <= hi)] for v in data.values]))
    # cumulative[i, j]: samples of window i at or below grid[j].
    cumulative = np.empty((k, grid.size), dtype=np.float64)
    sizes = np.empty(k, dtype=np.float64)
    for i, (v, c) in enumerate(zip(data.values, data.counts, strict=True)):
        running = np.concatenate([[0], np.cumsum(c)])
        cumulative[i] = running[np.searchsorted(v, grid, side="right")]
        sizes[i] = running[-1]
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(np.float64)
    merged = weights @ cumulative
    target = _rank(p, weights @ sizes)
    reached = merged >= target[:, None]
    index = np.where(reached.any(axis=1), reached.argmax(axis=1), grid.size - 1)
    return np.asarray(grid[index], dtype=np.float64)


@dataclass(frozen=True)
class Diagnostics:
    """Distribution tests on pooled samples, shown for context; they never decide a verdict."""

    ks_statistic: float
    ks_pvalue: float
    mannwhitney_u: float
    mannwhitney_pvalue: float


@dataclass(frozen=True)
class Comparison:
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
    tolerance: float
    baseline_samples: int
    candidate_samples: int
    baseline_windows: int
    candidate_windows: int
    diagnostics: Diagnostics | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
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


def classify(ci_low: float, ci_high: float, tolerance: float) -> Verdict:
    if ci_low > 1.0 + tolerance:
        return Verdict.REGRESSION
    if ci_high < 1.0 - tolerance:
        return Verdict.IMPROVEMENT
    if ci_low >= 1.0 - tolerance and ci_high <= 1.0 + tolerance:
        return Verdict.EQUIVALENT
    return Verdict.INCONCLUSIVE


def compare_percentile(
    candidate: Windowed,
    baseline: Windowed,
    percentile: float,
    *,
    name: str = "",
    tolerance: float = 0.10,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_windows: int = 5,
    min_samples_factor: float = 10.0,
    with_diagnostics: bool = True,
) -> Comparison:
    """Compare percentile ``percentile`` (e.g. 95) of ``candidate`` against ``baseline``."""
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    rng = np.random.default_rng(seed)
    base_value, cand_value = baseline.percentile(percentile), candidate.percentile(percentile)
    ratio = cand_value / base_value if base_value > 0 else math.nan
    diag = diagnostics(candidate, baseline, seed=seed) if with_diagnostics else None

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
            tolerance=tolerance,
            baseline_samples=baseline.total,
            candidate_samples=candidate.total,
            baseline_windows=baseline.n_windows,
            candidate_windows=candidate.n_windows,
            diagnostics=diag,
        )

    needed = min_samples_for(percentile, min_samples_factor)
    shortfalls = [
        f"{side} has {data.total} samples, p{percentile:g} needs >= {needed}"
        for side, data in (("baseline", baseline), ("candidate", candidate))
        if data.total < needed
    ] + [
        f"{side} has {data.n_windows} windows, needs >= {min_windows}"
        for side, data in (("baseline", baseline), ("candidate", candidate))
        if data.n_windows < min_windows
    ]
    if shortfalls:
        return result(
            Verdict.INCONCLUSIVE, "too little data: " + "; ".join(shortfalls), math.nan, math.nan
        )
    if not base_value > 0:
        return result(Verdict.INCONCLUSIVE, "baseline percentile is zero", math.nan, math.nan)

    base_boot = bootstrap_percentiles(baseline, percentile, resamples=resamples, rng=rng)
    cand_boot = bootstrap_percentiles(candidate, percentile, resamples=resamples, rng=rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = cand_boot / base_boot
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size < resamples // 2:
        return result(
            Verdict.INCONCLUSIVE, "bootstrap degenerate (zero baseline)", math.nan, math.nan
        )
    alpha = 1.0 - confidence
    low, high = (float(x) for x in np.quantile(ratios, [alpha / 2, 1 - alpha / 2]))
    verdict = classify(low, high, tolerance)
    band = f"[{1 - tolerance:.2f}, {1 + tolerance:.2f}]"
    reason = {
        Verdict.REGRESSION: f"CI entirely above {1 + tolerance:.2f}",
        Verdict.IMPROVEMENT: f"CI entirely below {1 - tolerance:.2f}",
        Verdict.EQUIVALENT: f"CI inside {band}",
        Verdict.INCONCLUSIVE: f"CI [{low:.3f}, {high:.3f}] crosses the tolerance band {band}",
    }[verdict]
    return result(verdict, reason, low, high)


def compare_runs(
    candidate: Mapping[str, Windowed],
    baseline: Mapping[str, Windowed],
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    tolerance: float = 0.10,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_windows: int = 5,
) -> list[Comparison]:
    """Every (metric, percentile) present in either run; a metric missing on one side is
    INCONCLUSIVE rather than silently skipped."""
    out: list[Comparison] = []
    empty = Windowed((), ())
    for name in sorted(set(candidate) | set(baseline)):
        for p in percentiles:
            out.append(
                compare_percentile(
                    candidate.get(name, empty),
                    baseline.get(name, empty),
                    p,
                    name=name,
                    tolerance=tolerance,
                    confidence=confidence,
                    resamples=resamples,
                    seed=seed,
                    min_windows=min_windows,
                )
            )
    return out
