"""The line charts of ``report.html``: run time across, phases shaded, as inline SVG.

Inline SVG keeps the page self-contained (no scripts, fonts or URLs); see
:mod:`loadtests.report_html` for what the page charts.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


LEGEND_TOP, LEGEND_ROW = 35, 16  # first legend row's text baseline; the rows' pitch
LEGEND_CHAR_W = 6.6  # a generous average width of an 11 px legend character
LEGEND_GAP = 18


def legend_rows(labels: Sequence[str], room: float) -> list[list[tuple[float, int, str]]]:
    """Legend entries laid out in rows of at most ``room`` px: (x, index of the label, label
    shown), a label too long for a row of its own cut with an ellipsis (the full one in a
    tooltip)."""
    max_chars = max(4, int((room - 20) / LEGEND_CHAR_W))
    rows: list[list[tuple[float, int, str]]] = [[]]
    x = 0.0
    for index, label in enumerate(labels):
        shown = label if len(label) <= max_chars else label[: max_chars - 1] + "\u2026"
        width = 20 + LEGEND_CHAR_W * len(shown)
        if rows[-1] and x + width > room:
            rows.append([])
            x = 0.0
        rows[-1].append((x, index, shown))
        x += width + LEGEND_GAP
    return rows


def fmt_clock(seconds: float) -> str:
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
    """A line chart over run time (seconds) with shaded phases, as an inline ``<svg>``.

    The legend goes in rows under the title, as many as its entries need, and the chart
    grows by them: the plot keeps its height and nothing overlaps the axis labels.
    """
    left, right, bottom = 52, 14, 30
    legend = legend_rows([s.label for s in series], width - left - right)
    top = LEGEND_TOP + LEGEND_ROW * len(legend) + 14
    height += top - 44  # the plot is as tall as with a single legend row
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
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 17}" class="xt">{fmt_clock(tick)}</text>')
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
    for row, entries in enumerate(legend):
        y = LEGEND_TOP + LEGEND_ROW * row
        for x, index, shown in entries:
            s = series[index]
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            parts.append(
                f'<g class="legend"><title>{html.escape(s.label)}</title>'
                f'<line x1="{left + x:.1f}" x2="{left + x + 16:.1f}" y1="{y - 4}" y2="{y - 4}" '
                f'stroke="{s.color}" stroke-width="2.5"{dash}/>'
                f'<text x="{left + x + 20:.1f}" y="{y}" class="lg">{html.escape(shown)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
