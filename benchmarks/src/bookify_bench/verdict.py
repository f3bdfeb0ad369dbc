"""`bookify bench verdict`: how often the baseline verdict cries wolf, and how often it finds
a known slowdown.

Against a running `bookify up`, N A/A pairs (a baseline run, then a candidate run of the
same code compared with it) and N A/B pairs (the same, with the gateway's fault switch adding
``slowdown`` x the baseline's p50 to every request during the candidate run), interleaved so
that a machine getting busier touches both kinds alike. A pair is *flagged* when any of its
comparisons is a REGRESSION (`bookify load --baseline` would exit 4): flagged A/A pairs are
false positives, flagged A/B pairs detections.

Each run is an open-model soak (``bookify load soak --open``): a fixed arrival rate, so a
slower server shows as latency and not as less load. Every run seeds the same resources
(:func:`loadtests.data.seed_resources`); the store is not dropped between runs, since that
cannot be done under running services (see :mod:`bookify_platform.reset`), so bookings accumulate,
and each report says how the runs' starts differed. Not a test: it prints figures.

:func:`replay_verdict` judges the runs a bench recorded again, with more baseline runs per
pair or another SLO file, in seconds rather than the hour of load it took to record them.

Both also fit, on their A/A pairs, how much one run differs from the next of the same code
beyond its own windows (:func:`fit_run_noise`, for ``[baseline.run_noise]`` in the SLO
file). The fit is printed, never used by the same bench's verdicts: those use the SLO file,
so the rates stay an out-of-sample test of it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from loadtests import faultctl
from loadtests.gates import BaselineSettings, SloConfig
from loadtests.options import DEFAULT_SLO, LoadOptions
from loadtests.recorder import Recorder
from loadtests.report import SUMMARY_FILE, baseline_comparisons, baseline_runs, windowed_metrics
from loadtests.runner import run_open
from loadtests.stats import Verdict, min_samples_for, window_bootstrap_se
from shared.faults import FaultSettings

Progress = Callable[[str], None]
PairKind = Literal["A/A", "A/B"]
# One load run: (config, run folder, baseline folder or None) -> its exit code.
RunLoad = Callable[["VerdictBenchConfig", Path, Path | None], int]
INVALID_EXIT = 5


@dataclass(frozen=True)
class VerdictBenchConfig:
    host: str
    runs_root: Path
    pairs: int = 10
    duration: float = 60.0
    rate: float = 50.0
    slowdown: float = 0.20  # of the baseline's p50, added on the gateway in A/B pairs
    baseline_runs: int = 1
    seed_resources: int = 20
    principals: int = 50

    @property
    def window(self) -> float:
        """Recorder windows: a dozen per run (at least 1 s, at most the usual 5 s), so a
        short run still has the windows a verdict needs."""
        return min(5.0, max(1.0, self.duration / 12))

    def runs(self) -> int:
        return 2 * self.pairs * (self.baseline_runs + 1)


@dataclass(frozen=True)
class PairResult:
    kind: PairKind
    index: int
    folder: str
    baseline_p50_ms: float | None
    injected_ms: float
    valid: bool
    flagged: bool
    regressions: list[str]
    verdicts: dict[str, int]
    start_differences: list[str]
    seconds: float


@dataclass
class VerdictFigures:
    config: VerdictBenchConfig
    pairs: list[PairResult] = field(default_factory=list)
    seconds: float = 0.0
    replayed: bool = False  # judged again from recorded runs (replay_verdict)
    run_noise_fit: dict[float, float] = field(default_factory=dict)  # fit_run_noise

    def rate(self, kind: PairKind) -> tuple[int, int]:
        """(flagged, valid) pairs of ``kind``."""
        valid = [p for p in self.pairs if p.kind == kind and p.valid]
        return sum(p.flagged for p in valid), len(valid)

    def as_dict(self) -> dict[str, Any]:
        fp, aa = self.rate("A/A")
        hit, ab = self.rate("A/B")
        config = {**asdict(self.config), "runs_root": str(self.config.runs_root)}
        return {
            "config": {**config, "window_s": self.config.window},
            "false_positives": fp,
            "aa_pairs": aa,
            "false_positive_rate": fp / aa if aa else None,
            "detections": hit,
            "ab_pairs": ab,
            "detection_rate": hit / ab if ab else None,
            "invalid_pairs": sum(not p.valid for p in self.pairs),
            "replayed": self.replayed,
            "run_noise_fit": {f"p{p:g}": sd for p, sd in self.run_noise_fit.items()},
            "seconds": round(self.seconds, 1),
            "pairs": [asdict(p) for p in self.pairs],
        }


def _summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / SUMMARY_FILE).read_text("utf-8"))
    return data


def open_soak(config: VerdictBenchConfig, run_dir: Path, baseline: Path | None) -> int:
    """One open-model soak run into ``run_dir`` (compared with ``baseline``); exit code."""
    options = LoadOptions(
        shape="soak",
        host=config.host,
        rate=config.rate,
        duration=config.duration,
        run_dir=run_dir,
        baseline=baseline,
        window=config.window,
        seed_resources=config.seed_resources,
        principals=config.principals,
        booking_url=None,
        consumer_url=None,
    )
    return run_open(options, say=lambda _: None)


def _pair(
    config: VerdictBenchConfig,
    kind: PairKind,
    index: int,
    folder: Path,
    faults: FaultSwitch,
    run_load: RunLoad,
) -> PairResult:
    started = time.monotonic()
    base_dir = folder / "baseline"
    codes = []
    for k in range(config.baseline_runs):
        run_dir = base_dir / f"run{k + 1}" if config.baseline_runs > 1 else base_dir
        codes.append(run_load(config, run_dir, None))
    base_runs = [base_dir] if config.baseline_runs == 1 else sorted(base_dir.iterdir())
    p50s = [_summary(run)["total"]["p50"] for run in base_runs]
    p50 = sorted(p50s)[len(p50s) // 2] if all(p is not None for p in p50s) else None
    injected = round(config.slowdown * p50, 3) if kind == "A/B" and p50 else 0.0
    if injected:
        # Switches itself off after the run even if this process dies.
        settings = FaultSettings(latency_ms=injected, duration_seconds=config.duration + 120)
        faults.apply({"gateway": settings})
    try:
        codes.append(run_load(config, folder / "candidate", base_dir))
    finally:
        if injected:
            faults.reset()
    summary = _summary(folder / "candidate")
    comparisons = summary["comparisons"]
    regressions = [
        f"{c['name']} p{c['percentile']:g} {c['delta_ms']:+.1f} ms (x{c['ratio']:.2f})"
        for c in comparisons
        if c["verdict"] == "REGRESSION"
    ]
    return PairResult(
        kind=kind,
        index=index,
        folder=str(folder),
        baseline_p50_ms=p50,
        injected_ms=injected,
        valid=INVALID_EXIT not in codes,
        flagged=bool(regressions),
        regressions=regressions,
        verdicts=dict(Counter(c["verdict"] for c in comparisons)),
        start_differences=list(summary["meta"].get("start_differences") or []),
        seconds=round(time.monotonic() - started, 1),
    )


class FaultSwitch(Protocol):
    """What the bench needs of :class:`loadtests.faultctl.FaultController`."""

    def apply(self, plan: Mapping[str, FaultSettings]) -> object: ...

    def reset(self) -> None: ...


def bench_verdict(
    config: VerdictBenchConfig,
    progress: Progress = print,
    *,
    run_load: RunLoad = open_soak,
    faults: FaultSwitch | None = None,
) -> VerdictFigures:
    """Run the pairs, A/A and A/B interleaved; the figures."""
    started = time.monotonic()
    if faults is None:
        faults = faultctl.FaultController(faultctl.targets(config.host), run_id="bench-verdict")
    figures = VerdictFigures(config)
    for index in range(1, config.pairs + 1):
        for kind in ("A/A", "A/B"):
            tag = "aa" if kind == "A/A" else "ab"
            folder = config.runs_root / f"{tag}-{index:02}"
            pair = _pair(config, kind, index, folder, faults, run_load)
            figures.pairs.append(pair)
            injected = f", +{pair.injected_ms:g} ms on the gateway" if pair.injected_ms else ""
            found = "; ".join(pair.regressions) or "no regression"
            progress(
                f"{kind} pair {index}/{config.pairs}{injected}: "
                f"{'INVALID (generator saturated)' if not pair.valid else found} "
                f"({pair.seconds:.0f} s)"
            )
    figures.run_noise_fit = fit_run_noise(
        _aa_runs(figures), SloConfig.from_toml(DEFAULT_SLO).baseline
    )
    figures.seconds = time.monotonic() - started
    return figures


def replay_verdict(
    runs_root: Path,
    *,
    baseline_runs: int = 1,
    slo: SloConfig | None = None,
    progress: Progress = print,
) -> VerdictFigures:
    """Judge again the pairs a bench recorded under ``runs_root`` (``aa-NN``/``ab-NN`` with a
    ``baseline`` and a ``candidate`` run each), with ``baseline_runs`` baseline runs a pair:
    its own baseline and the same-code runs recorded just before it (earlier pairs'
    baselines and A/A candidates, newest first). A pair without that many earlier runs is
    left out. The gate's own comparison (:func:`loadtests.report.baseline_comparisons`)
    under ``slo`` (default: the default SLO file)."""
    settings = (slo or SloConfig.from_toml(DEFAULT_SLO)).baseline
    folders = sorted(
        (p for p in runs_root.iterdir() if p.is_dir() and p.name[:3] in ("aa-", "ab-")),
        key=lambda p: (int(p.name[3:]), p.name.startswith("ab")),  # the order they ran in
    )
    if not folders:
        raise ValueError(f"{runs_root}: no aa-NN or ab-NN pair folders (a bench's --runs-root)")
    figures = VerdictFigures(
        VerdictBenchConfig(host="", runs_root=runs_root, pairs=0, baseline_runs=baseline_runs),
        replayed=True,
    )
    same_code: list[Path] = []  # every run of the unchanged code so far, in order
    started = time.monotonic()
    for folder in folders:
        kind: PairKind = "A/A" if folder.name.startswith("aa") else "A/B"
        base = folder / "baseline"
        earlier = same_code[len(same_code) - (baseline_runs - 1) :] if baseline_runs > 1 else []
        if len(earlier) == baseline_runs - 1:
            comparisons = baseline_comparisons(
                Recorder.load(folder / "candidate"), [base, *reversed(earlier)], settings
            )
            regressions = [
                f"{c.name} p{c.percentile:g} {c.delta_ms:+.1f} ms (x{c.ratio:.2f})"
                for c in comparisons
                if c.verdict is Verdict.REGRESSION
            ]
            figures.pairs.append(
                PairResult(
                    kind=kind,
                    index=int(folder.name[3:]),
                    folder=str(folder),
                    baseline_p50_ms=_summary(base)["total"]["p50"],
                    injected_ms=0.0,  # not recorded in the run folders
                    valid=True,
                    flagged=bool(regressions),
                    regressions=regressions,
                    verdicts=dict(Counter(c.verdict.value for c in comparisons)),
                    start_differences=[],
                    seconds=0.0,
                )
            )
            progress(f"{kind} {folder.name}: {'; '.join(regressions) or 'no regression'}")
        same_code.append(base)
        if kind == "A/A":
            same_code.append(folder / "candidate")
    figures.run_noise_fit = fit_run_noise(_aa_runs(figures), settings)
    figures.seconds = time.monotonic() - started
    return figures


def fit_run_noise(pairs: list[tuple[Path, Path]], settings: BaselineSettings) -> dict[float, float]:
    """Per percentile, the standard deviation of a run's log percentile from run to run, from
    the A/A ``pairs`` (baseline, candidate run folders): the variance of log(candidate /
    baseline) over every request endpoint both runs measured well enough, less what both
    runs' own window bootstraps explain, halved (a pair is two runs). Same code on both
    sides, so what a percentile moved by is the machine and chance. Empty with no pair."""
    b = settings
    rng = np.random.default_rng(b.seed)
    rows: dict[float, list[tuple[float, float]]] = {p: [] for p in b.percentiles}
    for base_dir, cand_dir in pairs:
        metrics_b, metrics_c = (
            windowed_metrics(Recorder.load(run), phases=b.phases, skip_first=b.skip_first)
            for run in (base_dir, cand_dir)
        )
        for p in b.percentiles:
            needed = min_samples_for(p)
            for name in sorted(set(metrics_b) & set(metrics_c) - {"e2e"}):
                runs = (metrics_b[name], metrics_c[name])
                if any(r.total < needed or r.n_windows < b.min_windows for r in runs):
                    continue
                vb, vc = (r.percentile(p) for r in runs)
                if vb > 0 and vc > 0:
                    within = sum(
                        window_bootstrap_se(r, p, resamples=b.resamples, rng=rng) ** 2 for r in runs
                    )
                    rows[p].append((math.log(vc / vb), within))
    return {
        p: round(math.sqrt(max(0.0, float(np.mean([d * d - w for d, w in got]))) / 2), 3)
        for p, got in rows.items()
        if got
    }


def _aa_runs(figures: VerdictFigures) -> list[tuple[Path, Path]]:
    """Each valid A/A pair's baseline run just before its candidate, and the candidate."""
    out = []
    for pair in figures.pairs:
        if pair.kind != "A/A" or not pair.valid:
            continue
        try:
            base = baseline_runs(Path(pair.folder) / "baseline")[-1]
        except ValueError:  # no recorded windows to fit on
            continue
        out.append((base, Path(pair.folder) / "candidate"))
    return out


def _rate(flagged: int, total: int) -> str:
    return f"{flagged}/{total} ({flagged / total:.0%})" if total else "no valid pair"


def verdict_report(figures: VerdictFigures) -> str:
    c = figures.config
    fp, aa = figures.rate("A/A")
    hit, ab = figures.rate("A/B")
    injected = [p.injected_ms for p in figures.pairs if p.kind == "A/B" and p.injected_ms]
    head = (
        f"verdict replay of {c.runs_root}: {aa} A/A + {ab} A/B pairs judged again, "
        f"{c.baseline_runs} baseline run(s) per pair; {figures.seconds:.0f} s"
        if figures.replayed
        else f"verdict bench: {c.pairs} A/A + {c.pairs} A/B pairs, open-model soak at "
        f"{c.rate:g}/s, {c.duration:g} s runs ({c.window:g} s windows), {c.baseline_runs} "
        f"baseline run(s) per pair; {figures.seconds:.0f} s in all"
    )
    lines = [
        head,
        f"  false positives (A/A flagged)   {_rate(fp, aa)}",
        f"  detections (A/B flagged)        {_rate(hit, ab)}"
        + (
            ""  # a replay does not know what was injected
            if figures.replayed
            else f"   slowdown {c.slowdown:.0%} of the baseline p50 on the gateway"
            + (f" ({min(injected):g}-{max(injected):g} ms)" if injected else "")
        ),
    ]
    invalid = sum(not p.valid for p in figures.pairs)
    if invalid:
        lines.append(f"  {invalid} pair(s) INVALID (the generator saturated) and left out")
    unlike = sum(bool(p.start_differences) for p in figures.pairs)
    if unlike:
        lines.append(f"  {unlike} pair(s) did not start alike (bookings accumulate between runs)")
    if figures.run_noise_fit:
        fit = ", ".join(f"p{p:g} {sd:g}" for p, sd in figures.run_noise_fit.items())
        lines.append(
            f"  run-to-run noise on the A/A pairs (sd of a run's log percentile): {fit} "
            "(what [baseline.run_noise] in the SLO file takes; these verdicts used the file's)"
        )
    lines.append(f"  run folders under {c.runs_root}")
    return "\n".join(lines)
