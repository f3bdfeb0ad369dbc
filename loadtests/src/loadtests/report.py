"""Run folder outputs: ``summary.json`` (for machines) and ``report.html`` (for people).

This module builds the summary; :mod:`loadtests.report_html` renders it as the page.
:func:`finalize` is the one call a runner needs at the end of a run: save raw data, compare
with a baseline run folder, evaluate the SLO gates, write both files and return the outcome
whose ``exit_code`` the process exits with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.gates import BaselineSettings, GateOutcome, SloConfig, evaluate
from loadtests.recorder import (
    E2E,
    REQUEST,
    SUMMARY_PERCENTILES,
    WINDOWS_FILE,
    Recorder,
    RunSummary,
    window_percentiles,
)
from loadtests.report_html import decision_brief, render_html
from loadtests.stats import Comparison, Windowed, compare_runs

SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"
# e2e latency is found by polling, up to 0.5 s apart (loadtests.users.poll_delays): a change
# smaller than that is where the polls fell, not the pipeline.
E2E_RESOLUTION_MS = 500.0
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReportPaths:
    summary: Path
    report: Path


# ---------------------------------------------------------------------------- summary.json
def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists, float noise rounded."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _series(recorder: Recorder, name: str | None, kind: str) -> list[dict[str, Any]]:
    rows = []
    for window in recorder.windows:
        cell = recorder.cell(name, window.index, kind)
        pct = window_percentiles(cell)
        rows.append(
            {
                "window": window.index,
                "count": cell.count,
                "errors": cell.errors,
                "rps": cell.count / window.duration if window.duration > 0 else 0.0,
                **{f"p{p:g}": pct[p] for p in SUMMARY_PERCENTILES},
            }
        )
    return rows


def build_summary(
    recorder: Recorder,
    summary: RunSummary,
    outcome: GateOutcome | None = None,
    *,
    title: str = "Bookify load test",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``summary.json`` holds, as plain JSON-safe data."""
    windows = [
        {
            "index": w.index,
            "start_s": w.start,
            "duration_s": w.duration,
            "phase": w.phase,
            "users": w.users,
            "cpu": w.cpu_utilisation,
        }
        for w in recorder.windows
    ]
    data = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "meta": dict(meta or {}),
        "started_at": datetime.fromtimestamp(recorder.t0, UTC).isoformat(),
        "duration_s": summary.duration_s,
        "window_s": summary.window_s,
        "status": outcome.exit_code.name if outcome else None,
        "exit_code": int(outcome.exit_code) if outcome else None,
        "headline": outcome.headline if outcome else None,
        "reasons": list(outcome.reasons) if outcome else [],
        "validity": asdict(summary.validity),
        "open_model": {
            "intended_rate": summary.intended_rate,
            "achieved_rate": summary.achieved_rate,
        },
        "total": asdict(summary.total),
        "endpoints": {name: asdict(s) for name, s in summary.endpoints.items()},
        "e2e": asdict(summary.e2e) if summary.e2e else None,
        "statuses": summary.statuses,
        "windows": windows,
        "series": {
            "all": _series(recorder, None, REQUEST),
            "endpoints": {name: _series(recorder, name, REQUEST) for name in recorder.endpoints},
            "e2e": _series(recorder, None, E2E) if recorder.e2e_names else [],
        },
        "gates": [r.to_dict() for r in outcome.results] if outcome else [],
        "comparisons": [c.to_dict() for c in outcome.comparisons] if outcome else [],
    }
    return dict(_clean(data))


def write_report(
    run_dir: Path,
    recorder: Recorder,
    summary: RunSummary,
    outcome: GateOutcome | None = None,
    *,
    title: str = "Bookify load test",
    meta: Mapping[str, Any] | None = None,
) -> ReportPaths:
    """Write ``summary.json`` and ``report.html`` into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = build_summary(recorder, summary, outcome, title=title, meta=meta)
    summary_path = run_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", "utf-8")
    report_path = run_dir / REPORT_FILE
    report_path.write_text(render_html(data), "utf-8")
    return ReportPaths(summary_path, report_path)


def windowed_metrics(
    recorder: Recorder, *, phases: Sequence[str] | None, skip_first: int
) -> dict[str, Windowed]:
    """Per-endpoint (and e2e) latency windows that baseline comparison uses."""
    out = {
        name: recorder.windowed(name, phases=phases, skip_first=skip_first)
        for name in recorder.endpoints
    }
    if recorder.e2e_names:
        out["e2e"] = recorder.windowed(None, kind=E2E, phases=phases, skip_first=skip_first)
    return out


def baseline_comparisons(
    recorder: Recorder, runs: Sequence[Path], settings: BaselineSettings
) -> list[Comparison]:
    """The verdicts of a run (its recorder) against the baseline run folders ``runs``."""
    b = settings
    return compare_runs(
        windowed_metrics(recorder, phases=b.phases, skip_first=b.skip_first),
        [
            windowed_metrics(Recorder.load(run), phases=b.phases, skip_first=b.skip_first)
            for run in runs
        ],
        percentiles=b.percentiles,
        thresholds=b.thresholds,
        resolution_ms={"e2e": E2E_RESOLUTION_MS},
        confidence=b.confidence,
        resamples=b.resamples,
        seed=b.seed,
        min_windows=b.min_windows,
        run_noise=b.run_noise,
    )


def baseline_runs(path: Path) -> list[Path]:
    """The run folders ``--baseline`` names: ``path`` itself when it is a run folder, else
    every run folder directly inside it (several runs of the same code)."""
    if (path / WINDOWS_FILE).is_file():
        return [path]
    runs = (
        sorted(p for p in path.iterdir() if (p / WINDOWS_FILE).is_file()) if path.is_dir() else []
    )
    if not runs:
        raise ValueError(
            f"--baseline {path}: neither a run folder nor a folder of run folders "
            f"(no {WINDOWS_FILE} in it or in its subfolders)"
        )
    return runs


def _data_state(run_dir: Path) -> Mapping[str, Any] | None:
    meta = (_summary_data(run_dir) or {}).get("meta") or {}
    state = meta.get("data_state")
    return state if isinstance(state, Mapping) else None


def _summary_data(run_dir: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, Mapping) else None


def _describe_state(state: Mapping[str, Any]) -> str:
    at_least = "" if state.get("resources_complete", True) else "at least "
    return f"{at_least}{state.get('resources')} resources, {state.get('seats_taken')} seats taken"


def start_differences(
    candidate: Mapping[str, Any] | None, baselines: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> list[str]:
    """Why the candidate and each baseline run did not start from the same data (resources
    in the store, seats taken on the seeded ones); empty when they did."""
    hint = "`bookify reset` before each run gives every run the same start"
    if candidate is None:
        return ["this run recorded no data state: whether it started like the baseline is unknown"]
    out = []
    for name, state in baselines:
        if state is None:
            out.append(
                f"baseline {name} recorded no data state: whether it started alike is unknown"
            )
        elif any(
            state.get(key) != candidate.get(key)
            for key in ("resources", "resources_complete", "seats_taken")
        ):
            out.append(
                f"did not start alike: baseline {name} with {_describe_state(state)}, this run "
                f"with {_describe_state(candidate)} ({hint})"
            )
    return out


def finalize(
    run_dir: Path,
    recorder: Recorder,
    *,
    slo: SloConfig | None = None,
    baseline_dir: Path | None = None,
    intended_rate: float | None = None,
    achieved_rate: float | None = None,
    title: str = "Bookify load test",
    meta: Mapping[str, Any] | None = None,
) -> GateOutcome:
    """Save raw data, compare with ``baseline_dir`` (a previous run folder, or a folder of
    several), gate, report."""
    config = slo or SloConfig()
    recorder.close()
    recorder.save(run_dir)
    summary = recorder.summary(intended_rate=intended_rate, achieved_rate=achieved_rate)
    comparisons: list[Comparison] = []
    meta = {**(meta or {}), "baseline": str(baseline_dir) if baseline_dir else None}
    if baseline_dir is not None:
        b = config.baseline
        runs = baseline_runs(baseline_dir)
        meta["start_differences"] = start_differences(
            meta.get("data_state"), [(run.name, _data_state(run)) for run in runs]
        )
        meta["baseline_decisions"] = [
            {"run": run.name, **decision_brief(data)}
            for run in runs
            if (data := _summary_data(run)) is not None
        ]
        comparisons = baseline_comparisons(recorder, runs, b)
    outcome = evaluate(summary, config, comparisons)
    write_report(run_dir, recorder, summary, outcome, title=title, meta=meta)
    return outcome
