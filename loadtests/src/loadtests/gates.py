"""SLO gates: they decide a load test's exit code.

Exit codes (highest precedence first; a run gets exactly one):

- ``5`` INVALID -- the load generator saturated its CPU, so its latencies measure its own
  queueing; neither SLO nor baseline verdicts mean anything and the run must be repeated
  (on a bigger or less loaded machine, or with more workers).
- ``4`` REGRESSION -- at least one baseline comparison is REGRESSION (a percentile slower
  beyond its threshold, with a confidence interval above 1; see :mod:`loadtests.stats`). It
  outranks an SLO breach because it names the change that made things worse, which is the
  more actionable finding; the SLO gate rows are still reported.
- ``3`` SLO BREACH -- at least one gate failed (per-endpoint p95/p99, error ratio, e2e
  latency, achieved/intended arrival rate of the open model).
- ``0`` PASS. INCONCLUSIVE and EQUIVALENT/IMPROVEMENT verdicts do not fail a run.

``1`` and ``2`` are left to Python and argparse (crash, usage error).

The SLO file is TOML (see ``slo.default.toml``)::

    [defaults]                # every endpoint not listed under [endpoints]
    p95_ms = 300
    p99_ms = 800
    max_error_ratio = 0.01

    [endpoints."POST /bookings"]   # key = endpoint name as recorded
    p95_ms = 250

    [e2e]                     # accepted -> confirmed
    p95_ms = 2000

    [run]
    max_error_ratio = 0.01    # all endpoints together
    min_rate_ratio = 0.95     # open model: achieved / intended arrival rate

    [baseline]
    confidence = 0.95         # for the run's comparisons together (Bonferroni)
    percentiles = [50, 95, 99]
    resamples = 2000
    min_windows = 5
    phases = ["steady"]       # windows to compare; omitted = all full windows
    skip_first = 1            # warm-up windows dropped before comparing

    [baseline.thresholds]     # smallest change worth a verdict, per percentile
    p50 = { relative = 0.10, ms = 1 }
    p95 = { relative = 0.15, ms = 2 }

An endpoint listed under ``[endpoints]`` that never got a request fails its gates: a typo
in a name must not pass silently. Unknown keys are rejected for the same reason.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from loadtests.recorder import LatencyStats, RunSummary
from loadtests.stats import (
    DEFAULT_PERCENTILES,
    DEFAULT_THRESHOLDS,
    Comparison,
    Threshold,
    Verdict,
)


class ExitCode(IntEnum):
    PASS = 0
    SLO_BREACH = 3
    REGRESSION = 4
    INVALID = 5


class SloConfigError(ValueError):
    pass


@dataclass(frozen=True)
class LatencySlo:
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = None


@dataclass(frozen=True)
class BaselineSettings:
    thresholds: Mapping[float, Threshold] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    confidence: float = 0.95
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    resamples: int = 2000
    min_windows: int = 5
    phases: tuple[str, ...] | None = None
    skip_first: int = 0
    seed: int = 0
    # percentile -> sd of a run's log percentile from run to run, for one baseline run
    # (stats.compare_percentile's run_noise); empty: not assumed.
    run_noise: Mapping[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SloConfig:
    defaults: LatencySlo = field(default_factory=LatencySlo)
    endpoints: Mapping[str, LatencySlo] = field(default_factory=dict)
    e2e: LatencySlo | None = None
    max_error_ratio: float | None = None
    min_rate_ratio: float | None = None
    baseline: BaselineSettings = field(default_factory=BaselineSettings)

    @classmethod
    def from_toml(cls, path: Path) -> SloConfig:
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SloConfigError(f"{path}: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SloConfig:
        _only(data, {"defaults", "endpoints", "e2e", "run", "baseline"}, "top level")
        run = data.get("run", {})
        _only(run, {"max_error_ratio", "min_rate_ratio"}, "[run]")
        base = data.get("baseline", {})
        _only(base, set(BaselineSettings.__dataclass_fields__), "[baseline]")
        phases = base.get("phases")
        baseline = BaselineSettings(
            thresholds=_thresholds(base.get("thresholds", {})),
            confidence=float(base.get("confidence", 0.95)),
            percentiles=tuple(float(p) for p in base.get("percentiles", DEFAULT_PERCENTILES)),
            resamples=int(base.get("resamples", 2000)),
            min_windows=int(base.get("min_windows", 5)),
            phases=tuple(str(p) for p in phases) if phases is not None else None,
            skip_first=int(base.get("skip_first", 0)),
            seed=int(base.get("seed", 0)),
            run_noise=_run_noise(base.get("run_noise", {})),
        )
        return cls(
            defaults=_latency_slo(data.get("defaults", {}), "[defaults]"),
            endpoints={
                name: _latency_slo(table, f'[endpoints."{name}"]')
                for name, table in data.get("endpoints", {}).items()
            },
            e2e=_latency_slo(data["e2e"], "[e2e]") if "e2e" in data else None,
            max_error_ratio=_opt_float(run.get("max_error_ratio")),
            min_rate_ratio=_opt_float(run.get("min_rate_ratio")),
            baseline=baseline,
        )


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise SloConfigError(f"{where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise SloConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")


def _thresholds(table: Mapping[str, Any]) -> dict[float, Threshold]:
    """``{"p50": {"relative": 0.1, "ms": 1}}`` over the defaults; a percentile not listed
    takes its nearest neighbour's."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in table.items():
        where = f"[baseline.thresholds] {key}"
        percentile = _percentile(key, where)
        _only(value, {"relative", "ms"}, where)
        default = out.get(percentile, DEFAULT_THRESHOLDS[95.0])
        out[percentile] = Threshold(
            float(value.get("relative", default.relative)), float(value.get("ms", default.ms))
        )
    return out


def _run_noise(table: Mapping[str, Any]) -> dict[float, float]:
    """``{"p50": 0.09}``: a standard deviation >= 0 per percentile (``bookify bench verdict``
    fits it on its A/A pairs)."""
    if not isinstance(table, Mapping):
        raise SloConfigError("[baseline.run_noise] must be a table")
    out = {}
    for key, value in table.items():
        where = f"[baseline.run_noise] {key}"
        percentile = _percentile(key, where)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise SloConfigError(f"{where}: give a sd >= 0 (0: none)")
        out[percentile] = float(value)
    return out


def _percentile(key: str, where: str) -> float:
    """A table key naming a percentile: ``p95`` -> 95.0."""
    if re.fullmatch(r"p\d+(\.\d+)?", key) is None:
        raise SloConfigError(f"{where}: name a percentile like p95")
    return float(key[1:])


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _latency_slo(table: Mapping[str, Any], where: str) -> LatencySlo:
    _only(table, {"p95_ms", "p99_ms", "max_error_ratio"}, where)
    return LatencySlo(
        p95_ms=_opt_float(table.get("p95_ms")),
        p99_ms=_opt_float(table.get("p99_ms")),
        max_error_ratio=_opt_float(table.get("max_error_ratio")),
    )


@dataclass(frozen=True)
class GateResult:
    scope: str  # endpoint name, "e2e", "run" or "generator"
    metric: str  # "p95_ms", "p99_ms", "error_ratio", "rate_ratio", "valid"
    threshold: float | None
    actual: float | None
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("threshold", "actual"):
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = None
        return out


@dataclass(frozen=True)
class GateOutcome:
    results: tuple[GateResult, ...]
    comparisons: tuple[Comparison, ...]
    exit_code: ExitCode
    headline: str
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.exit_code is ExitCode.PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_code),
            "status": self.exit_code.name,
            "headline": self.headline,
            "reasons": list(self.reasons),
            "gates": [r.to_dict() for r in self.results],
        }


def _upper(scope: str, metric: str, limit: float | None, actual: float | None) -> list[GateResult]:
    if limit is None:
        return []
    if actual is None or not math.isfinite(actual):
        return [GateResult(scope, metric, limit, None, False, "no samples recorded")]
    return [GateResult(scope, metric, limit, actual, actual <= limit)]


def _latency_gates(scope: str, slo: LatencySlo, stats: LatencyStats | None) -> list[GateResult]:
    return (
        _upper(scope, "p95_ms", slo.p95_ms, stats.p95 if stats and stats.count else None)
        + _upper(scope, "p99_ms", slo.p99_ms, stats.p99 if stats and stats.count else None)
        + _upper(
            scope,
            "error_ratio",
            slo.max_error_ratio,
            stats.error_ratio if stats and stats.count else None,
        )
    )


def evaluate(
    summary: RunSummary, config: SloConfig, comparisons: Sequence[Comparison] = ()
) -> GateOutcome:
    """Every gate of ``config`` against ``summary``, plus the baseline verdicts -> exit code."""
    results: list[GateResult] = []
    for name in sorted(set(summary.endpoints) | set(config.endpoints)):
        slo = config.endpoints.get(name, config.defaults)
        results += _latency_gates(name, slo, summary.endpoints.get(name))
    if config.e2e is not None:
        results += _latency_gates("e2e", config.e2e, summary.e2e)
    results += _upper(
        "run",
        "error_ratio",
        config.max_error_ratio,
        summary.total.error_ratio if summary.total.count else None,
    )
    if config.min_rate_ratio is not None and summary.intended_rate:
        achieved = summary.achieved_rate or 0.0
        ratio = achieved / summary.intended_rate
        detail = f"achieved {achieved:.1f}/s of intended {summary.intended_rate:.1f}/s"
        results.append(
            GateResult(
                "run",
                "rate_ratio",
                config.min_rate_ratio,
                ratio,
                ratio >= config.min_rate_ratio,
                detail,
            )
        )
    validity = summary.validity
    results.append(
        GateResult("generator", "valid", None, validity.max_cpu, validity.valid, validity.reason)
    )
    return decide(results, comparisons)


def decide(results: Sequence[GateResult], comparisons: Sequence[Comparison] = ()) -> GateOutcome:
    """Exit code and human headline from gate results and verdicts (precedence 5 > 4 > 3 > 0)."""
    invalid = [r for r in results if r.metric == "valid" and not r.passed]
    breaches = [r for r in results if r.metric != "valid" and not r.passed]
    regressions = [c for c in comparisons if c.verdict is Verdict.REGRESSION]
    if invalid:
        code, headline = ExitCode.INVALID, "INVALID run: the load generator was the bottleneck"
        reasons = [r.detail for r in invalid]
    elif regressions:
        code, headline = (
            ExitCode.REGRESSION,
            f"FAIL: {len(regressions)} regression(s) against the baseline"
            + (f", {len(breaches)} SLO gate(s) breached" if breaches else ""),
        )
        reasons = [
            f"{c.name} p{c.percentile:g}: {c.baseline_value:.1f} -> {c.candidate_value:.1f} ms "
            f"({c.delta_ms:+.1f} ms, x{c.ratio:.2f}, {c.confidence:.1%} CI "
            f"{c.ci_low:.2f}-{c.ci_high:.2f})"
            for c in regressions
        ]
    elif breaches:
        code, headline = ExitCode.SLO_BREACH, f"FAIL: {len(breaches)} SLO gate(s) breached"
        reasons = []
    else:
        code, headline, reasons = ExitCode.PASS, "PASS: every SLO gate held", []
    reasons += [describe(r) for r in breaches]
    return GateOutcome(tuple(results), tuple(comparisons), code, headline, tuple(reasons))


def describe(result: GateResult) -> str:
    """One line for a gate result, e.g. ``POST /bookings p99 812.0 ms > SLO 600 ms``."""
    scope, metric, actual, limit = result.scope, result.metric, result.actual, result.threshold
    if metric == "valid":
        return f"generator: {result.detail or ('ok' if result.passed else 'saturated')}"
    if actual is None or limit is None:
        return f"{scope} {metric.removesuffix('_ms')}: {result.detail or 'no data'}"
    if metric == "rate_ratio":
        op = ">=" if result.passed else "<"
        text = f"{scope}: achieved {actual:.1%} of the intended arrival rate {op} {limit:.0%}"
    elif metric == "error_ratio":
        op = "<=" if result.passed else ">"
        text = f"{scope} error ratio {actual:.2%} {op} SLO {limit:.2%}"
    else:
        op = "<=" if result.passed else ">"
        text = f"{scope} {metric.removesuffix('_ms')} {actual:.1f} ms {op} SLO {limit:g} ms"
    return f"{text} ({result.detail})" if result.detail else text
