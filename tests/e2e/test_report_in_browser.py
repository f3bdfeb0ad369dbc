"""The HTML report in a real browser (Debian's headless chromium, `make tools`): the header
is a short summary and every chart's legend fits inside its chart, clear of the title, the
axis labels, the plot and the other entries.

The page itself has no scripts; the test renders a copy with a small one that measures the
laid-out boxes and writes them into the DOM, which ``--dump-dom`` returns.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtests.recorder import Recorder
from loadtests.report import REPORT_FILE, write_report
from loadtests.shapes import StepHealth, StepSlo, StressShape

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000.0
# The endpoints a stress run records, the error shape's long names among them.
ENDPOINTS = (
    "GET /v1/resources",
    "GET /v1/resources/{id}",
    "POST /v1/bookings",
    "GET /v1/bookings/{id}",
    "POST /v1/bookings/{id}/cancel",
    "POST /v1/bookings [unknown-resource]",
    "GET /v1/resources/{id} [wrong-key-token]",
    "POST /v1/bookings/{id}/cancel [cancel-unknown]",
    "a very long endpoint name that alone is wider than the whole chart it is drawn in, ok",
)

MEASURE = """
<script>
(() => {
  const box = (el) => el.getBoundingClientRect();
  const overlap = (a, b) =>
    a.left < b.right - 0.5 && b.left < a.right - 0.5 &&
    a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const sub = document.getElementById("summary");
  const out = {
    header: {
      height: box(sub).height,
      line: parseFloat(getComputedStyle(sub).lineHeight),
      overflows: sub.scrollWidth > sub.clientWidth + 1,
      text: sub.textContent,
    },
    charts: [],
  };
  for (const svg of document.querySelectorAll(".chart svg")) {
    const frame = box(svg);
    const legend = [...svg.querySelectorAll(".lg")].map(box);
    const fixed = [...svg.querySelectorAll(".ct, .yt, .xt")].map(box);
    const plotTop = Math.min(...[...svg.querySelectorAll(".grid")].map((l) => box(l).top));
    out.charts.push({
      title: svg.getAttribute("aria-label"),
      entries: legend.length,
      outside: legend.filter(
        (r) => r.left < frame.left - 0.5 || r.right > frame.right + 0.5 || r.top < frame.top - 0.5
      ).length,
      on_labels: legend.filter((r) => fixed.some((f) => overlap(r, f))).length,
      on_each_other: legend.filter(
        (r, i) => legend.some((q, j) => i !== j && overlap(r, q))
      ).length,
      into_plot: legend.filter((r) => r.bottom > plotTop + 0.5).length,
    });
  }
  document.body.setAttribute("data-layout", JSON.stringify(out));
})();
</script>
"""


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is missing: `make tools` installs Debian's package"
    return found


def stress_run(run_dir: Path) -> Path:
    """A stress run of many endpoints: 8 steps, the last one broken."""
    rng = np.random.default_rng(3)
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    shape = StressShape(level=10, duration=240, step=10, step_s=30, slo=StepSlo(p95_ms=300))
    for second in range(240):
        step = second // 30 + 1
        rec.set_phase(f"step {step}")
        rec.set_users(10 * step)
        for i, name in enumerate(ENDPOINTS):
            for start in T0 + second + rng.random(6):
                latency = (5 + 3 * i) * step * rng.lognormal(0, 0.4) / 1000
                rec.record(name, start, latency, rng.random() > 0.002)
        rec.tick(T0 + second + 1)
    rec.stop(T0 + 240)
    for step in range(1, 9):
        p95 = 40.0 * step
        shape.judge_step(step, StepHealth(1800, p95 if step < 8 else 450.0, 0.0))
    meta = {
        "run_id": "1a2b3c4d",
        "host": "http://127.0.0.1:8000,http://127.0.0.1:8003",
        "model": "closed (Locust users)",
        "processes": 2,
        "shape": shape.describe(),
        "resources": 20,
        "principals": 50,
        "capacity_users": shape.capacity.level if shape.capacity else None,
        "data_state": {
            "resources": 20,
            "resources_complete": True,
            "seeded": 20,
            "seeded_reused": 20,
            "seats_taken": 4321,
        },
    }
    write_report(run_dir, rec, rec.summary(), title="Bookify load test: stress", meta=meta)
    return run_dir / REPORT_FILE


def render(page: Path, tmp_path: Path, *flags: str) -> str:
    profile = tmp_path / "profile"
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,2400", *flags, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def layout(tmp_path: Path) -> dict[str, Any]:
    report = stress_run(tmp_path / "run")
    measured = tmp_path / "measured.html"
    measured.write_text(report.read_text("utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
    dom = render(measured, tmp_path, "--dump-dom")
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the measuring script did not run:\n" + dom[-1000:]
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    if shots := os.environ.get("BOOKIFY_REPORT_SCREENSHOT"):
        render(report, tmp_path, f"--screenshot={shots}")
    return data


def test_the_header_is_a_short_summary_and_the_legends_fit(tmp_path: Path) -> None:
    data = layout(tmp_path)
    header = data["header"]
    assert not header["overflows"]
    assert header["height"] <= 2 * header["line"] + 1, header
    assert "stress from 10 users, +10 every 30 s" in header["text"]
    assert "1a2b3c4d" in header["text"]
    assert "{" not in header["text"], "no raw shape dict"
    endpoints = next(c for c in data["charts"] if c["title"] == "p95 latency by endpoint")
    assert endpoints["entries"] == len(ENDPOINTS)
    for chart in data["charts"]:
        assert chart["entries"] >= 1, chart
        bad = {k: chart[k] for k in ("outside", "on_labels", "on_each_other", "into_plot")}
        assert bad == dict.fromkeys(bad, 0), chart
