"""``report.html``: one self-contained page (inline CSS, charts as inline SVG, no scripts,
fonts or URLs) for a ``summary.json`` dict, so it can be attached to a CI job or mailed."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from loadtests.gates import ExitCode
from loadtests.recorder import SAMPLES_FILE
from loadtests.report_chart import PALETTE, Series, fmt_clock, svg_chart
from loadtests.stats import Verdict

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
.card .n { color:var(--muted); font-size:12px; line-height:1.3; }
.card.answer { border-color:#93c5fd; background:#eff6ff; }
.details { margin-top:10px; } .details summary { cursor:pointer; color:var(--muted); }
.details table { margin-top:6px; width:auto; }
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
.p-info { background:#f1f5f9; color:#475569; }
.eff-bad { color:var(--bad); font-weight:650; } .eff-ok { color:var(--ok); font-weight:650; }
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
                    # Past the palette, colours come again, dashed to tell them apart.
                    Series(
                        name,
                        _col(rows, "p95"),
                        PALETTE[i % len(PALETTE)],
                        dashed=i >= len(PALETTE),
                    )
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


def _effect(c: Mapping[str, Any]) -> str:
    """``+1.4 ms (x1.21, CI 1.08-1.35)``; coloured only when beyond the threshold."""
    ratio, delta = c["ratio"], c.get("delta_ms")
    if ratio is None or delta is None:
        return '<span class="muted">&ndash;</span>'
    ci = (
        f", CI {c['ci_low']:.2f}&ndash;{c['ci_high']:.2f}"
        if c["ci_low"] is not None and c["ci_high"] is not None
        else ""
    )
    text = f"{delta:+.1f} ms (&times;{ratio:.2f}{ci})"
    beyond = abs(delta) >= c["threshold_ms"] and (
        ratio >= 1 + c["threshold_relative"] or ratio <= 1 / (1 + c["threshold_relative"])
    )
    if not beyond:
        return f'<span class="muted">{text}</span>'
    return f'<span class="{"eff-bad" if delta > 0 else "eff-ok"}">{text}</span>'


def _comparison_table(comparisons: Sequence[Mapping[str, Any]], baseline: Any) -> str:
    if not comparisons:
        return '<p class="muted">No baseline run given.</p>'
    rows = []
    for c in comparisons:
        pill = _VERDICT_PILL.get(c["verdict"], "p-warn")
        d = c["diagnostics"] or {}
        ks, mw = _pvalue(d.get("ks_pvalue")), _pvalue(d.get("mannwhitney_pvalue"))
        threshold = f"{c['threshold_relative']:.0%} &amp; {c['threshold_ms']:g} ms"
        rows.append(
            f"<tr><td>{_e(c['name'])}</td><td>p{c['percentile']:g}</td>"
            f"<td>{_ms(c['baseline_value'])}</td><td>{_ms(c['candidate_value'])}</td>"
            f"<td>{_effect(c)}</td><td class='muted'>{threshold}</td>"
            f'<td><span class="pill {pill}">{_e(c["verdict"])}</span></td>'
            f"<td class='l wrap muted'>{_e(c['reason'])}</td>"
            f"<td class='muted'>{c['baseline_windows']}/{c['candidate_windows']}</td>"
            f"<td class='muted'>{ks}</td><td class='muted'>{mw}</td></tr>"
        )
    first = comparisons[0]
    head = (
        "<tr><th class='l'>Metric</th><th>Pct</th><th>Baseline ms</th><th>Candidate ms</th>"
        f"<th>Effect ({first['confidence']:.1%} CI of the ratio)</th><th>Threshold</th>"
        "<th class='l'>Verdict</th><th class='l'>Why</th><th>Windows b/c</th>"
        "<th>KS p</th><th>MW p</th></tr>"
    )
    runs = first["baseline_runs"]
    note = (
        f'<p class="note">Baseline <code>{_e(baseline)}</code>'
        f"{f' ({runs} runs)' if runs > 1 else ''}. Method: {_e(first['method'])}. "
        "A change counts only beyond its threshold (relative and in ms, raised to the baseline "
        "runs' own spread when there are several) and when its interval excludes no change; "
        "coloured effects are beyond the threshold. The intervals hold together for the whole "
        "table (Bonferroni). KS and Mann&ndash;Whitney p-values are diagnostics only and never "
        "decide a verdict.</p>"
    )
    return f"<div class='tw'><table>{head}{''.join(rows)}</table></div>{note}"


def decision_brief(data: Mapping[str, Any]) -> dict[str, Any]:
    """How a run's clients learned their decisions, and what it cost the gateway, from its
    ``summary.json`` data: the row the report sets beside a baseline's (poll against push)."""
    meta = data.get("meta") or {}
    e2e = data.get("e2e") or {}
    cpu = meta.get("gateway_cpu") or {}
    shape = meta.get("shape")
    return {
        "follow": meta.get("follow") or "poll",
        "shape": shape.get("shape") if isinstance(shape, Mapping) else shape,
        "rps": (data.get("total") or {}).get("rps"),
        "gateway_cores": cpu.get("cores"),
        "known_p50_ms": e2e.get("p50"),
        "known_p99_ms": e2e.get("p99"),
        "decisions": e2e.get("count"),
    }


def _decisions_table(data: Mapping[str, Any]) -> str:
    """This run and its baseline runs side by side: how clients learned their decisions (poll
    or push), the requests/s that took, the gateway's CPU, and 202 -> known."""
    if not data["e2e"]:
        return ""
    rows = [{"run": "this run", **decision_brief(data)}]
    rows += data["meta"].get("baseline_decisions") or []
    body = "".join(
        f"<tr><td class='l'>{_e(r['run'])}</td><td class='l'>{_e(r['follow'])}</td>"
        f"<td class='l'>{_e(r['shape'] or '')}</td><td>{_rate(r['rps'])}</td>"
        f"<td>{_cores(r['gateway_cores'])}</td><td>{_ms(r['known_p50_ms'])}</td>"
        f"<td>{_ms(r['known_p99_ms'])}</td><td>{r['decisions'] or 0:,}</td></tr>"
        for r in rows
    )
    head = (
        "<tr><th class='l'>Run</th><th class='l'>Decisions by</th><th class='l'>Shape</th>"
        "<th>Requests/s</th><th>Gateway CPU</th><th>202 &rarr; known p50 ms</th>"
        "<th>p99 ms</th><th>Decisions</th></tr>"
    )
    return (
        "<h2>Waiting for decisions: poll or push</h2>"
        f"<div class='tw'><table>{head}{body}</table></div>"
        "<p class='note'>Gateway CPU: cores busy on average, from each gateway's "
        "<code>process_cpu_seconds_total</code> at the run's start and end. Run the same "
        "shape with <code>--follow poll</code> and <code>--follow push</code>, the second "
        "with <code>--baseline</code> the first, to compare them here.</p>"
    )


def _rate(value: Any) -> str:
    return '<span class="muted">&ndash;</span>' if value is None else f"{float(value):,.1f}"


def _cores(value: Any) -> str:
    return '<span class="muted">&ndash;</span>' if value is None else f"{float(value):.2f} cores"


def _start_differences(lines: Sequence[str]) -> str:
    """A warning above the verdicts when the compared runs did not start from the same data."""
    if not lines:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<div class="banner INVALID start"><b>Not the same start.</b><ul>{items}</ul></div>'


def _unit(meta: Mapping[str, Any]) -> str:
    """What a shape's level counts: arrivals per second (open model) or users."""
    return "/s" if str(meta.get("model", "")).startswith("open") else " users"


def _level(value: Any, meta: Mapping[str, Any]) -> str:
    return f"{float(value):,.4g}{_unit(meta)}"


def _shape(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The shape's description (``BookifyShape.describe``); a bare name is taken as one."""
    shape = meta.get("shape") or {}
    return shape if isinstance(shape, Mapping) else {"shape": str(shape)}


def _shape_text(meta: Mapping[str, Any]) -> str:
    """``stress from 10 users, +10 every 30 s`` and the like, from the shape's description."""
    shape = _shape(meta)
    name, level = shape.get("shape", "?"), shape.get("level")
    if level is None:
        return _e(name)
    if name == "stress" and shape.get("step") is not None:
        return (
            f"<b>stress</b> from {_level(level, meta)}, +{float(shape['step']):,.4g} every "
            f"{float(shape.get('step_s') or 0):g} s"
        )
    if name == "spike" and shape.get("peak") is not None:
        return f"<b>spike</b> {_level(level, meta)} &rarr; {_level(shape['peak'], meta)}"
    return f"<b>{_e(name)}</b> at {_level(level, meta)}"


def _summary_bits(data: Mapping[str, Any]) -> list[str]:
    """The line under the title: shape, duration, host, run id, start; nothing more."""
    meta = data["meta"]
    bits = [_shape_text(meta), f"{fmt_clock(data['duration_s'])} long"]
    if meta.get("follow"):
        bits.append(f"decisions by {_e(meta['follow'])}")
    if meta.get("host"):
        bits.append(f"host <code>{_e(meta['host'])}</code>")
    if meta.get("run_id"):
        bits.append(f"run <code>{_e(meta['run_id'])}</code>")
    bits.append(f"started {_e(data['started_at'][:19].replace('T', ' '))} UTC")
    return bits


_DETAIL_SKIP = frozenset(
    {
        "shape",
        "baseline",
        "baseline_decisions",
        "start_differences",
        "data_state",
        "run_id",
        "host",
        "follow",
    }
)


def _details(data: Mapping[str, Any]) -> str:
    """Everything else about the run, folded away: model, processes, data state, faults."""
    meta = data["meta"]
    rows = [("window", f"{data['window_s']:g} s")]
    rows += [(k, v) for k, v in meta.items() if k not in _DETAIL_SKIP and v is not None]
    state = meta.get("data_state")
    if state:
        at_least = "" if state.get("resources_complete", True) else "at least "
        rows.append(
            (
                "data at start",
                f"{at_least}{state.get('resources')} resources in the store, "
                f"{state.get('seeded')} seeded ({state.get('seeded_reused')} reused), "
                f"{state.get('seats_taken')} of their seats taken",
            )
        )
    body = "".join(
        f"<tr><td class='l'>{_e(k)}</td><td class='l wrap'>"
        f"{_e('; '.join(map(str, v)) if isinstance(v, list) else v)}</td></tr>"
        for k, v in rows
    )
    return f"<details class='details'><summary>Run details</summary><table>{body}</table></details>"


def _steps_table(meta: Mapping[str, Any]) -> str:
    steps = _shape(meta).get("steps") or []
    if not steps:
        return ""
    rows = "".join(
        f"<tr><td>{s['step']}</td><td>{_level(s['level'], meta)}</td><td>{s['count']:,}</td>"
        f"<td>{_ms(s['p95_ms'])}</td><td>{_pct(s['error_ratio'])}</td>"
        f"<td><span class='pill {'p-ok' if s['healthy'] else 'p-bad'}'>"
        f"{'healthy' if s['healthy'] else 'broke'}</span></td>"
        f"<td class='l wrap muted'>{_e(s['why'])}</td></tr>"
        for s in steps
    )
    head = (
        "<tr><th>Step</th><th>Level</th><th>Requests</th><th>p95 ms</th><th>Errors</th>"
        "<th class='l'>Step SLO</th><th class='l'>Why</th></tr>"
    )
    return f"<h2>Stress steps</h2><div class='tw'><table>{head}{rows}</table></div>"


def _drift(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """Soak: the p95 of the run's last third of windows against its first third."""
    p95s = [r["p95"] for r in data["series"]["all"] if r.get("count") and r.get("p95")]
    third = len(p95s) // 3
    if third < 1:
        return None
    first = sorted(p95s[:third])[third // 2]
    last = sorted(p95s[-third:])[third // 2]
    change = last / first - 1 if first else 0.0
    return f"{change:+.0%}", f"p95 {_ms(first)} &rarr; {_ms(last)} ms, first to last third"


def _answer_cards(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Each shape's own answer, first: (title, value, note)."""
    meta = data["meta"]
    shape = _shape(meta)
    name = shape.get("shape")
    if name == "stress":
        capacity = shape.get("capacity")
        steps = shape.get("steps") or []
        broken = next((s for s in steps if not s["healthy"]), None)
        if capacity is None:
            value, note = "none", "even the first step broke the step SLO"
        elif not shape.get("broke"):
            value, note = f"&ge; {_level(capacity, meta)}", "limit not found: no step broke"
        else:
            value, note = _level(capacity, meta), "the last healthy step"
        cards = [("Capacity", value, note)]
        if broken is not None:
            cards.append(
                (
                    "Broke at",
                    f"step {broken['step']}: {_level(broken['level'], meta)}",
                    _e(broken["why"]),
                )
            )
        return cards
    if name == "spike" and "recovery_s" in meta:
        recovery = meta["recovery_s"]
        if recovery is None:
            return [("Recovery", "not back", "p95 never returned to 1.25&times; the baseline")]
        return [("Recovery", f"{recovery:.0f} s", "until p95 was back within 1.25&times; baseline")]
    if name == "soak" and (drift := _drift(data)) is not None:
        return [("Drift", *drift)]
    return []


def _cards(data: Mapping[str, Any]) -> str:
    total = data["total"]
    cards = [(k, v, n) for k, v, n in _answer_cards(data)]
    cards += [
        ("Requests", f"{total['count']:,}", ""),
        ("Throughput", f"{(total['rps'] or 0):,.1f}/s", ""),
        ("Errors", _pct(total["error_ratio"]), ""),
        ("p95", f"{_ms(total['p95'])} ms", ""),
        ("p99", f"{_ms(total['p99'])} ms", ""),
    ]
    if data["e2e"]:
        cards.append(("e2e p95", f"{_ms(data['e2e']['p95'])} ms", ""))
    om = data["open_model"]
    if om["intended_rate"]:
        cards.append(
            (
                "Arrival rate",
                f"{(om['achieved_rate'] or 0):,.0f} / {om['intended_rate']:,.0f}/s",
                "",
            )
        )
    cards.append(("Generator CPU peak", _pct(data["validity"]["max_cpu"], 0), ""))
    answers = len(_answer_cards(data))
    return "".join(
        f'<div class="card{" answer" if i < answers else ""}"><div class="k">{k}</div>'
        f'<div class="v">{v}</div>{f"<div class=n>{n}</div>" if n else ""}</div>'
        for i, (k, v, n) in enumerate(cards)
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
<div class="sub" id="summary">{" &middot; ".join(_summary_bits(data))}</div>
{banner}
<div class="cards">{_cards(data)}</div>
{_details(data)}
<h2>Over time</h2>
<div class="charts">{"".join(_charts(data))}</div>
{validity_note}
{_steps_table(meta)}
{_decisions_table(data)}
<h2>SLO gates</h2>
{_gate_table(data["gates"])}
<h2>Baseline comparison</h2>
{_start_differences(meta.get("start_differences") or [])}
{_comparison_table(data["comparisons"], meta.get("baseline"))}
<h2>Endpoints</h2>
{_endpoint_table(data)}
<p class="note">Latencies from HdrHistograms (3 significant digits), windows by request start time.
Raw samples: <code>{SAMPLES_FILE}</code> (when recorded) and <code>windows.jsonl</code>.</p>
</main></body></html>
"""
