"""Run folder outputs: ``summary.json`` (for machines) and ``report.html`` (for people).

``report.html`` is self-contained: inline CSS, charts as inline SVG, no scripts, fonts or
URLs, so it can be attached to a CI job or mailed. :func:`finalize` is the one call a runner
needs at the end of a run: save raw data, compare with a baseline run folder, evaluate the
SLO gates, write both files and return the outcome whose ``exit_code`` the process exits with.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.gates import ExitCode, GateOutcome, SloConfig, evaluate
from loadtests.recorder import (
    E2E,
    REQUEST,
    SAMPLES_FILE,
    SUMMARY_PERCENTILES,
    Recorder,
    RunSummary,
    window_percentiles,
)
from loadtests.stats import Comparison, Verdict, Windowed, compare_runs

SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"
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


def read_summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / SUMMARY_FILE).read_text("utf-8"))
    return data


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
    """Save raw data, compare with ``baseline_dir`` (a previous run folder), gate, report."""
    config = slo or SloConfig()
    recorder.close()
    recorder.save(run_dir)
    summary = recorder.summary(intended_rate=intended_rate, achieved_rate=achieved_rate)
    comparisons: list[Comparison] = []
    if baseline_dir is not None:
        b = config.baseline
        baseline = Recorder.load(baseline_dir)
        comparisons = compare_runs(
            windowed_metrics(recorder, phases=b.phases, skip_first=b.skip_first),
            windowed_metrics(baseline, phases=b.phases, skip_first=b.skip_first),
            percentiles=b.percentiles,
            tolerance=b.tolerance,
            confidence=b.confidence,
            resamples=b.resamples,
            seed=b.seed,
            min_windows=b.min_windows,
        )
    outcome = evaluate(summary, config, comparisons)
    meta = {**(meta or {}), "baseline": str(baseline_dir) if baseline_dir else None}
    write_report(run_dir, recorder, summary, outcome, title=title, meta=meta)
    return outcome


# ---------------------------------------------------------------------------- SVG charts
PALETTE = ("#2563eb", "#d97706", "#dc2626", "#7c3aed", "#059669", "#db2777", "#0891b2", "#65a30d")
PHASE_FILLS = ("#eef6fd", "#f6f7f9", "#fdecf3", "#eefaf1", "#f3f0fd", "#fdf3e7", "#fbfbe9")


@dataclass(frozen=True)
class Series:
    label: str
    ys: Sequence[float | None]
    color: str
    dashed: bool = False
    width: float = 1.8


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * magnitude:
            return mult * magnitude
    return 10 * magnitude


def _fmt_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _fmt_clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def svg_chart(
    title: str,
    xs: Sequence[float],
    series: Sequence[Series],
    *,
    unit: str,
    phases: Sequence[tuple[float, float, str]] = (),
    hlines: Sequence[tuple[float, str, str]] = (),
    width: int = 560,
    height: int = 250,
) -> str:
    """A line chart over run time (seconds) with shaded phases, as an inline ``<svg>``."""
    left, right, top, bottom = 52, 14, 44, 30
    pw, ph = width - left - right, height - top - bottom
    finite = [y for s in series for y in s.ys if y is not None and math.isfinite(y)]
    finite += [y for y, _, _ in hlines]
    y_max = max(finite, default=1.0) or 1.0
    step = _nice_step(y_max)
    y_top = math.ceil(y_max * 1.05 / step) * step
    x_lo = min(xs, default=0.0)
    x_hi = max([*xs, *(p[1] for p in phases)], default=1.0)
    if phases:
        x_lo = min(x_lo, phases[0][0])
    x_span = (x_hi - x_lo) or 1.0

    def sx(x: float) -> float:
        return left + (x - x_lo) / x_span * pw

    def sy(y: float) -> float:
        return top + ph - y / y_top * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" class="ct">{html.escape(title)}</text>',
    ]
    # One colour per phase name, so a phase that recurs looks the same each time.
    names = list(dict.fromkeys(name for _, _, name in phases))
    for x0, x1, name in phases:
        fill = PHASE_FILLS[names.index(name) % len(PHASE_FILLS)]
        parts.append(
            f'<rect x="{sx(x0):.1f}" y="{top}" width="{max(0.0, sx(x1) - sx(x0)):.1f}" '
            f'height="{ph}" fill="{fill}"><title>{html.escape(name)}</title></rect>'
        )
        if sx(x1) - sx(x0) > 6.2 * len(name) + 8:
            parts.append(
                f'<text x="{sx(x0) + 4:.1f}" y="{top + 11}" class="pl">{html.escape(name)}</text>'
            )
    tick = 0.0
    while tick <= y_top + 1e-9:
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="yt">{_fmt_tick(tick)}</text>')
        tick += step
    parts.append(f'<text x="{left - 6}" y="{top - 8}" class="yt">{html.escape(unit)}</text>')
    x_step = _nice_step(x_span, 6)
    for candidate in (15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if candidate >= x_step:
            x_step = candidate if x_span > 60 else x_step
            break
    tick = math.ceil(x_lo / x_step) * x_step
    while tick <= x_hi + 1e-9:
        x = sx(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 17}" class="xt">{_fmt_clock(tick)}</text>')
        tick += x_step
    parts.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
    )
    for y, label, color in hlines:
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            f'stroke="{color}" stroke-dasharray="6 4" stroke-width="1.2"/>'
            f'<text x="{left + pw - 4}" y="{sy(y) + 12:.1f}" class="hl" fill="{color}">'
            f"{html.escape(label)}</text>"
        )
    for s in series:
        segment: list[str] = []
        segments: list[list[str]] = []
        for x, value in zip(xs, s.ys, strict=False):
            if value is None or not math.isfinite(value):
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{sx(x):.1f},{sy(value):.1f}")
        if segment:
            segments.append(segment)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{s.color}"/>')
            else:
                parts.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke="{s.color}" '
                    f'stroke-width="{s.width}" stroke-linejoin="round"{dash}/>'
                )
    # Legend, right-aligned above the plot.
    x = float(width - right)
    for s in reversed(series):
        text_w = 6.2 * len(s.label)
        x -= text_w + 26
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(
            f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="31" y2="31" stroke="{s.color}" '
            f'stroke-width="2.5"{dash}/>'
            f'<text x="{x + 20:.1f}" y="35" class="lg">{html.escape(s.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------- HTML
CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#fff;
  --ok:#15803d; --okbg:#dcfce7; --bad:#b91c1c; --badbg:#fee2e2; --warn:#a16207; --warnbg:#fef9c3; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1200px; margin:0 auto; padding:28px 24px 48px; }
h1 { font-size:22px; margin:0 0 2px; } h2 { font-size:16px; margin:32px 0 10px; }
.sub { color:var(--muted); margin-bottom:18px; }
.banner { border-radius:10px; padding:16px 20px; margin-bottom:18px; border:1px solid; }
.banner .status { font-size:24px; font-weight:700; letter-spacing:.02em; }
.banner ul { margin:8px 0 0; padding-left:20px; }
.PASS { background:var(--okbg); border-color:#86efac; color:var(--ok); }
.SLO_BREACH, .REGRESSION { background:var(--badbg); border-color:#fca5a5; color:var(--bad); }
.INVALID, .NONE { background:var(--warnbg); border-color:#fde047; color:var(--warn); }
.banner li, .banner .head { color:var(--ink); }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(150px,1fr)); gap:10px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:10px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:650; font-variant-numeric:tabular-nums; }
.charts { display:grid; grid-template-columns:repeat(auto-fit,minmax(520px,1fr)); gap:12px; }
.chart { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:8px 10px 4px; }
svg text { font-family:inherit; }
.ct { font-size:13px; font-weight:650; fill:var(--ink); }
.yt { font-size:11px; fill:var(--muted); text-anchor:end; }
.xt { font-size:11px; fill:var(--muted); text-anchor:middle; }
.lg { font-size:11px; fill:#334155; } .pl { font-size:10px; fill:#475569; }
.hl { font-size:10px; text-anchor:end; }
.grid { stroke:#eef2f7; } .axis { stroke:#94a3b8; }
table { width:100%; border-collapse:collapse; background:var(--card); border:1px solid var(--line);
  border-radius:8px; overflow:hidden; font-variant-numeric:tabular-nums; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:right;
  white-space:nowrap; }
th { background:#f1f5f9; font-size:12px; color:#334155; font-weight:600; }
th:first-child, td:first-child, td.l, th.l { text-align:left; }
tr:last-child td { border-bottom:none; }
.tw { overflow-x:auto; border-radius:8px; }
td.wrap { white-space:normal; min-width:180px; }
.pill { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px;
  font-weight:650; }
.p-ok { background:var(--okbg); color:var(--ok); }
.p-bad { background:var(--badbg); color:var(--bad); }
.p-warn { background:var(--warnbg); color:var(--warn); }
.p-info { background:#e0e7ff; color:#3730a3; }
.muted { color:var(--muted); } .note { color:var(--muted); font-size:12px; margin-top:6px; }
code { background:#f1f5f9; padding:1px 5px; border-radius:4px; font-size:12px; }
"""

_VERDICT_PILL = {
    Verdict.REGRESSION.value: "p-bad",
    Verdict.IMPROVEMENT.value: "p-ok",
    Verdict.EQUIVALENT.value: "p-info",
    Verdict.INCONCLUSIVE.value: "p-warn",
}
_STATUS_TEXT = {
    ExitCode.PASS.name: "PASS",
    ExitCode.SLO_BREACH.name: "FAIL · SLO breached",
    ExitCode.REGRESSION.name: "FAIL · regression",
    ExitCode.INVALID.name: "INVALID run",
}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _ms(value: Any) -> str:
    if value is None:
        return '<span class="muted">&ndash;</span>'
    v = float(value)
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" if v >= 10 else f"{v:.2f}"


def _pct(value: Any, digits: int = 2) -> str:
    return (
        '<span class="muted">&ndash;</span>'
        if value is None
        else f"{float(value) * 100:.{digits}f}%"
    )


def _pvalue(value: Any) -> str:
    if value is None:
        return "&ndash;"
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def _phases(data: Mapping[str, Any]) -> list[tuple[float, float, str]]:
    spans: list[tuple[float, float, str]] = []
    for w in data["windows"]:
        phase = w["phase"]
        if phase is None:
            continue
        start, end = w["start_s"], w["start_s"] + w["duration_s"]
        if spans and spans[-1][2] == phase and abs(spans[-1][1] - start) < 1e-6:
            spans[-1] = (spans[-1][0], end, phase)
        else:
            spans.append((start, end, phase))
    return spans


def _col(rows: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    return [r.get(key) if r.get("count", 1) else None for r in rows]


def _charts(data: Mapping[str, Any]) -> list[str]:
    windows = data["windows"]
    xs = [w["start_s"] + w["duration_s"] / 2 for w in windows]
    phases = _phases(data)
    all_rows = data["series"]["all"]
    charts = [
        svg_chart(
            "Latency percentiles, all endpoints",
            xs,
            [
                Series("p50", _col(all_rows, "p50"), PALETTE[0]),
                Series("p90", _col(all_rows, "p90"), PALETTE[4]),
                Series("p95", _col(all_rows, "p95"), PALETTE[1]),
                Series("p99", _col(all_rows, "p99"), PALETTE[2]),
            ],
            unit="ms",
            phases=phases,
        )
    ]
    endpoint_rows = data["series"]["endpoints"]
    if endpoint_rows:
        charts.append(
            svg_chart(
                "p95 latency by endpoint",
                xs,
                [
                    Series(name, _col(rows, "p95"), PALETTE[i % len(PALETTE)])
                    for i, (name, rows) in enumerate(sorted(endpoint_rows.items()))
                ],
                unit="ms",
                phases=phases,
            )
        )
    charts.append(
        svg_chart(
            "Throughput and errors",
            xs,
            [
                Series("requests/s", [r["rps"] for r in all_rows], PALETTE[0]),
                Series(
                    "errors/s",
                    [
                        r["errors"] / w["duration_s"] if w["duration_s"] else None
                        for r, w in zip(all_rows, windows, strict=True)
                    ],
                    PALETTE[2],
                ),
            ],
            unit="per s",
            phases=phases,
        )
    )
    if any(w["users"] is not None for w in windows):
        charts.append(
            svg_chart(
                "Users",
                xs,
                [Series("users", [w["users"] for w in windows], PALETTE[3])],
                unit="users",
                phases=phases,
            )
        )
    e2e_rows = data["series"]["e2e"]
    if e2e_rows:
        charts.append(
            svg_chart(
                "End-to-end latency, accepted → confirmed",
                xs,
                [
                    Series("p50", _col(e2e_rows, "p50"), PALETTE[0]),
                    Series("p95", _col(e2e_rows, "p95"), PALETTE[1]),
                    Series("p99", _col(e2e_rows, "p99"), PALETTE[2]),
                ],
                unit="ms",
                phases=phases,
            )
        )
    if any(w["cpu"] is not None for w in windows):
        charts.append(
            svg_chart(
                "Load generator CPU (share of one core)",
                xs,
                [
                    Series(
                        "CPU",
                        [None if w["cpu"] is None else w["cpu"] * 100 for w in windows],
                        PALETTE[5],
                    )
                ],
                unit="%",
                phases=phases,
                hlines=[(90.0, "saturation 90%", PALETTE[2])],
            )
        )
    return [f'<div class="chart">{c}</div>' for c in charts]


def _endpoint_table(data: Mapping[str, Any]) -> str:
    rows = []
    items = sorted(data["endpoints"].items())
    if len(items) > 1:
        items.append(("All endpoints", data["total"]))
    if data["e2e"]:
        items.append(("e2e (accepted → confirmed)", data["e2e"]))
    for name, s in items:
        err = "p-bad" if s["error_ratio"] else ""
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{s['count']:,}</td><td>{(s['rps'] or 0):,.1f}</td>"
            f'<td><span class="{err}">{_pct(s["error_ratio"])}</span></td>'
            + "".join(f"<td>{_ms(s[k])}</td>" for k in ("p50", "p90", "p95", "p99", "max"))
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Endpoint",
            "Requests",
            "Req/s",
            "Errors",
            "p50 ms",
            "p90 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
        )
    )
    return f"<div class='tw'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _gate_table(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return '<p class="muted">No SLO file given.</p>'
    rows = []
    for g in sorted(gates, key=lambda g: (g["passed"], g["scope"], g["metric"])):
        pill = (
            '<span class="pill p-ok">PASS</span>'
            if g["passed"]
            else '<span class="pill p-bad">FAIL</span>'
        )
        metric = g["metric"]
        if metric.endswith("_ms"):
            threshold, actual = f"&le; {_ms(g['threshold'])} ms", f"{_ms(g['actual'])} ms"
        elif metric == "error_ratio":
            threshold, actual = f"&le; {_pct(g['threshold'])}", _pct(g["actual"])
        elif metric == "rate_ratio":
            threshold, actual = f"&ge; {_pct(g['threshold'], 0)}", _pct(g["actual"], 1)
        else:  # generator validity: actual = peak CPU share
            threshold, actual = "not saturated", f"peak CPU {_pct(g['actual'], 0)}"
        label = metric.replace("_ms", "").replace("_", " ")
        rows.append(
            f"<tr><td>{pill}</td><td class='l'>{_e(g['scope'])}</td><td class='l'>{_e(label)}</td>"
            f"<td>{threshold}</td><td>{actual}</td>"
            f"<td class='l wrap muted'>{_e(g['detail'])}</td></tr>"
        )
    head = (
        "".join(f"<th class='l'>{h}</th>" for h in ("", "Scope", "Gate"))
        + "<th>Threshold</th><th>Actual</th><th class='l'>Detail</th>"
    )
    return f"<div class='tw'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _comparison_table(comparisons: Sequence[Mapping[str, Any]], baseline: Any) -> str:
    if not comparisons:
        return '<p class="muted">No baseline run given.</p>'
    rows = []
    for c in comparisons:
        pill = _VERDICT_PILL.get(c["verdict"], "p-warn")
        ci = (
            f"{c['ci_low']:.2f} &ndash; {c['ci_high']:.2f}"
            if c["ci_low"] is not None and c["ci_high"] is not None
            else '<span class="muted">&ndash;</span>'
        )
        ratio = f"&times;{c['ratio']:.2f}" if c["ratio"] is not None else "&ndash;"
        d = c["diagnostics"] or {}
        ks, mw = _pvalue(d.get("ks_pvalue")), _pvalue(d.get("mannwhitney_pvalue"))
        rows.append(
            f"<tr><td>{_e(c['name'])}</td><td>p{c['percentile']:g}</td>"
            f"<td>{_ms(c['baseline_value'])}</td><td>{_ms(c['candidate_value'])}</td><td>{ratio}</td><td>{ci}</td>"
            f'<td><span class="pill {pill}">{_e(c["verdict"])}</span></td>'
            f"<td class='l wrap muted'>{_e(c['reason'])}</td>"
            f"<td class='muted'>{c['baseline_windows']}/{c['candidate_windows']}</td>"
            f"<td class='muted'>{ks}</td><td class='muted'>{mw}</td></tr>"
        )
    conf = comparisons[0]["confidence"]
    tol = comparisons[0]["tolerance"]
    head = (
        "<tr><th class='l'>Metric</th><th>Pct</th><th>Baseline ms</th><th>Candidate ms</th>"
        f"<th>Ratio</th><th>{conf:.0%} CI</th><th class='l'>Verdict</th><th class='l'>Why</th>"
        "<th>Windows b/c</th>"
        "<th>KS p</th><th>MW p</th></tr>"
    )
    note = (
        f'<p class="note">Baseline <code>{_e(baseline)}</code>. Ratio = candidate / baseline; '
        "the CI is a block bootstrap over time windows (whole windows resampled, not single "
        f"requests); tolerance &plusmn;{tol:.0%}. "
        "KS and Mann&ndash;Whitney p-values are diagnostics only and never decide a verdict.</p>"
    )
    return f"<div class='tw'><table>{head}{''.join(rows)}</table></div>{note}"


def _cards(data: Mapping[str, Any]) -> str:
    total = data["total"]
    cards = [
        ("Requests", f"{total['count']:,}"),
        ("Throughput", f"{(total['rps'] or 0):,.1f}/s"),
        ("Errors", _pct(total["error_ratio"])),
        ("p95", f"{_ms(total['p95'])} ms"),
        ("p99", f"{_ms(total['p99'])} ms"),
    ]
    if data["e2e"]:
        cards.append(("e2e p95", f"{_ms(data['e2e']['p95'])} ms"))
    om = data["open_model"]
    if om["intended_rate"]:
        cards.append(
            ("Arrival rate", f"{(om['achieved_rate'] or 0):,.0f} / {om['intended_rate']:,.0f}/s")
        )
    cpu = data["validity"]["max_cpu"]
    cards.append(("Generator CPU peak", _pct(cpu, 0)))
    return "".join(
        f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>'
        for k, v in cards
    )


def render_html(data: Mapping[str, Any]) -> str:
    """The report page for a ``build_summary`` dict."""
    status = data["status"] or "NONE"
    status_text = _STATUS_TEXT.get(status, "No gates evaluated")
    reason_list = "".join(f"<li>{_e(r)}</li>" for r in data["reasons"])
    exit_code = data["exit_code"]
    banner = (
        f'<div class="banner {status}"><div class="status">{_e(status_text)}</div>'
        f'<div class="head">{_e(data["headline"] or "")}'
        f"{f' &mdash; exit code {exit_code}' if exit_code is not None else ''}</div>"
        f"{f'<ul>{reason_list}</ul>' if reason_list else ''}</div>"
    )
    meta = data["meta"]
    meta_bits = [
        f"started {_e(data['started_at'][:19].replace('T', ' '))} UTC",
        f"{_fmt_clock(data['duration_s'])} long",
    ]
    meta_bits.append(f"{data['window_s']:g} s windows")
    meta_bits += [f"{_e(k)}: {_e(v)}" for k, v in meta.items() if v is not None and k != "baseline"]
    validity = data["validity"]
    validity_note = (
        f'<p class="note">Generator: {_e(validity["reason"] or "not saturated")} '
        f"({validity['saturated_windows']}/{validity['measured_windows']} windows above the "
        "saturation line).</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data["title"])} &mdash; {_e(status_text)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>{_e(data["title"])}</h1>
<div class="sub">{" &middot; ".join(meta_bits)}</div>
{banner}
<div class="cards">{_cards(data)}</div>
<h2>Over time</h2>
<div class="charts">{"".join(_charts(data))}</div>
{validity_note}
<h2>SLO gates</h2>
{_gate_table(data["gates"])}
<h2>Baseline comparison</h2>
{_comparison_table(data["comparisons"], meta.get("baseline"))}
<h2>Endpoints</h2>
{_endpoint_table(data)}
<p class="note">Latencies from HdrHistograms (3 significant digits), windows by request start time.
Raw samples: <code>{SAMPLES_FILE}</code> (when recorded) and <code>windows.jsonl</code>.</p>
</main></body></html>
"""
