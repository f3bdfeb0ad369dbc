from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtests.gates import ExitCode, SloConfig, evaluate
from loadtests.recorder import Recorder
from loadtests.report import (
    REPORT_FILE,
    SUMMARY_FILE,
    build_summary,
    finalize,
    write_report,
)
from loadtests.report_chart import Series, svg_chart
from loadtests.report_html import render_html

T0 = 1_700_000_000.0
SLO = SloConfig.from_mapping(
    {
        "defaults": {"p95_ms": 100, "max_error_ratio": 0.05},
        "baseline": {"resamples": 500, "percentiles": [50, 95], "phases": ["steady"]},
    }
)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run folder's summary.json, as a script reading it would see it."""
    data: dict[str, Any] = json.loads((run_dir / SUMMARY_FILE).read_text("utf-8"))
    return data


def synthetic_run(seed: int, *, slow: float = 1.0, seconds: int = 60) -> Recorder:
    """Two endpoints at ~50 req/s each, a warm-up then a steady phase, e2e samples."""
    rng = np.random.default_rng(seed)
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    for second in range(seconds):
        rec.set_phase("warmup" if second < 10 else "steady")
        rec.set_users(10)
        for name, median_ms in (("GET /resources", 10.0), ("POST /bookings", 20.0 * slow)):
            for start in T0 + second + rng.random(50):
                rec.record(
                    name, start, median_ms * rng.lognormal(0, 0.3) / 1000, rng.random() > 0.01
                )
        for start in T0 + second + rng.random(5):
            rec.record_e2e(start, 0.3 * rng.lognormal(0, 0.3))
        rec.tick(T0 + second + 1)
    rec.stop(T0 + seconds)
    return rec


def test_report_writes_both_files_and_summary_round_trips(tmp_path: Path) -> None:
    rec = synthetic_run(1)
    summary = rec.summary()
    outcome = evaluate(summary, SLO)
    paths = write_report(tmp_path, rec, summary, outcome, meta={"shape": "steady"})
    assert paths.summary == tmp_path / SUMMARY_FILE
    assert paths.report == tmp_path / REPORT_FILE
    data = read_summary(tmp_path)
    assert data == build_summary(rec, summary, outcome, meta={"shape": "steady"})
    assert data["status"] == "PASS"
    assert data["exit_code"] == 0
    assert data["total"]["count"] == summary.total.count == 60 * 100
    assert set(data["endpoints"]) == {"GET /resources", "POST /bookings"}
    assert data["e2e"]["count"] == 300
    assert len(data["windows"]) == len(data["series"]["all"]) == 12
    assert data["windows"][0]["phase"] == "warmup"
    assert data["series"]["endpoints"]["POST /bookings"][3]["count"] == 250
    assert data["gates"]
    assert all(g["passed"] for g in data["gates"])


def test_report_html_is_self_contained(tmp_path: Path) -> None:
    rec = synthetic_run(1)
    summary = rec.summary()
    write_report(tmp_path, rec, summary, evaluate(summary, SLO))
    page = (tmp_path / REPORT_FILE).read_text("utf-8")
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r"""(src|href)\s*=""", page)
    assert set(re.findall(r"https?://[^\s\"')]+", page)) == {"http://www.w3.org/2000/svg"}
    assert page.count("<svg") >= 5  # latency, per endpoint, throughput, users, e2e
    assert "PASS" in page


def test_a_failing_run_says_why_in_the_headline(tmp_path: Path) -> None:
    rec = synthetic_run(1)
    summary = rec.summary()
    strict = SloConfig.from_mapping({"endpoints": {"POST /bookings": {"p95_ms": 5}}})
    write_report(tmp_path, rec, summary, evaluate(summary, strict))
    page = (tmp_path / REPORT_FILE).read_text("utf-8")
    banner = page[page.index('class="banner') : page.index('class="cards"')]
    assert "FAIL" in banner
    assert "POST /bookings p95" in banner
    assert "SLO 5 ms" in banner


def test_endpoint_names_are_escaped(tmp_path: Path) -> None:
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    rec.record("GET /<script>alert(1)</script>", T0 + 1, 0.01)
    rec.stop(T0 + 5)
    write_report(tmp_path, rec, rec.summary())
    page = (tmp_path / REPORT_FILE).read_text("utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_finalize_compares_with_a_baseline_folder_and_exits_four_on_regression(
    tmp_path: Path,
) -> None:
    baseline_dir, candidate_dir = tmp_path / "base", tmp_path / "cand"
    baseline_outcome = finalize(baseline_dir, synthetic_run(1), slo=SLO)
    assert baseline_outcome.exit_code is ExitCode.PASS
    outcome = finalize(
        candidate_dir, synthetic_run(2, slow=1.3), slo=SLO, baseline_dir=baseline_dir
    )
    assert outcome.exit_code is ExitCode.REGRESSION
    data = read_summary(candidate_dir)
    verdicts = {(c["name"], c["percentile"]): c["verdict"] for c in data["comparisons"]}
    assert verdicts[("POST /bookings", 95.0)] == "REGRESSION"
    assert verdicts[("GET /resources", 50.0)] == "EQUIVALENT"
    assert ("e2e", 95.0) in verdicts
    # steady phase only: 50 s = 10 windows compared on each side
    assert {c["baseline_windows"] for c in data["comparisons"]} == {10}
    assert data["meta"]["baseline"] == str(baseline_dir)
    assert (candidate_dir / "windows.jsonl").exists()
    page = (candidate_dir / REPORT_FILE).read_text("utf-8")
    assert "REGRESSION" in page
    assert "exit code 4" in page


def test_a_folder_of_baseline_runs_is_compared_as_several_runs(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        finalize(tmp_path / "base" / f"run{seed}", synthetic_run(seed), slo=SLO)
    same = finalize(tmp_path / "same", synthetic_run(4), slo=SLO, baseline_dir=tmp_path / "base")
    assert same.exit_code is ExitCode.PASS, same.reasons
    comparisons = read_summary(tmp_path / "same")["comparisons"]
    assert {c["baseline_runs"] for c in comparisons} == {3}
    assert {c["verdict"] for c in comparisons} <= {"EQUIVALENT", "INCONCLUSIVE"}
    assert "3 baseline runs" in comparisons[0]["method"]
    slow = finalize(
        tmp_path / "slow", synthetic_run(5, slow=1.5), slo=SLO, baseline_dir=tmp_path / "base"
    )
    assert slow.exit_code is ExitCode.REGRESSION
    with pytest.raises(ValueError, match="neither a run folder nor a folder of run folders"):
        finalize(tmp_path / "x", synthetic_run(6), slo=SLO, baseline_dir=tmp_path / "same" / "no")


def test_the_report_says_when_the_compared_runs_did_not_start_alike(tmp_path: Path) -> None:
    state = {"resources": 20, "resources_complete": True, "seats_taken": 0}
    finalize(tmp_path / "base", synthetic_run(1), slo=SLO, meta={"data_state": state})
    finalize(
        tmp_path / "alike", synthetic_run(2), slo=SLO, baseline_dir=tmp_path / "base",
        meta={"data_state": state},
    )  # fmt: skip
    assert read_summary(tmp_path / "alike")["meta"]["start_differences"] == []
    assert "Not the same start" not in (tmp_path / "alike" / REPORT_FILE).read_text("utf-8")
    grown = {**state, "resources": 40}
    finalize(
        tmp_path / "grown", synthetic_run(3), slo=SLO, baseline_dir=tmp_path / "base",
        meta={"data_state": grown},
    )  # fmt: skip
    [line] = read_summary(tmp_path / "grown")["meta"]["start_differences"]
    assert "did not start alike: baseline base with 20 resources" in line
    page = (tmp_path / "grown" / REPORT_FILE).read_text("utf-8")
    assert "Not the same start" in page


def page_for(rec: Recorder, meta: dict[str, Any]) -> str:
    return render_html(build_summary(rec, rec.summary(), meta=meta))


def test_each_shape_answers_its_own_question_first() -> None:
    rec = synthetic_run(1)
    stress = {
        "shape": "stress", "level": 10, "step": 10, "step_s": 30, "capacity": 70,
        "broke": True,
        "steps": [
            {"step": 1, "level": 10, "count": 50, "p95_ms": 12.0, "error_ratio": 0.0,
             "healthy": True, "why": "p95 12.0 ms"},
            {"step": 2, "level": 80, "count": 50, "p95_ms": 450.0, "error_ratio": 0.0,
             "healthy": False, "why": "p95 450.0 ms > 300 ms"},
        ],
    }  # fmt: skip
    page = page_for(rec, {"shape": stress, "model": "closed (Locust users)"})
    assert 'Capacity</div><div class="v">70 users' in page
    assert "step 2: 80 users" in page
    assert "stress</b> from 10 users, +10 every 30 s" in page
    unbroken = page_for(rec, {"shape": {**stress, "broke": False, "steps": []}})
    assert "&ge; 70 users" in unbroken
    assert "limit not found" in unbroken
    spike = page_for(rec, {"shape": {"shape": "spike", "level": 2, "peak": 20}, "recovery_s": 12})
    assert 'Recovery</div><div class="v">12 s' in spike
    soak = page_for(rec, {"shape": {"shape": "soak", "level": 5}, "model": "open (arrival rate)"})
    assert "Drift</div>" in soak
    assert "soak</b> at 5/s" in soak


def test_charts_break_lines_at_missing_points() -> None:
    svg = svg_chart(
        "p95",
        [2.5, 7.5, 12.5, 17.5],
        [Series("a", [1.0, 2.0, None, 4.0], "#000"), Series("empty", [None] * 4, "#111")],
        unit="ms",
        phases=[(0.0, 10.0, "warmup"), (10.0, 20.0, "steady")],
    )
    assert svg.count("<polyline") == 1
    assert svg.count("<circle") == 1  # the lone point after the gap
    assert "warmup" in svg
    assert not any(math.isnan(float(x)) for x in re.findall(r'y1="([^"]+)"', svg))


def test_summary_json_has_no_nan(tmp_path: Path) -> None:
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    rec.record("GET /a", T0 + 1, 0.01)
    rec.tick(T0 + 11)  # windows 1 and 2 are empty: percentiles are NaN -> null
    rec.stop(T0 + 15)
    write_report(tmp_path, rec, rec.summary())
    text = (tmp_path / SUMMARY_FILE).read_text("utf-8")
    assert "NaN" not in text
    assert json.loads(text)["series"]["all"][1]["p95"] is None


def test_a_push_run_is_set_beside_its_polling_baseline(tmp_path: Path) -> None:
    poll_cpu = {"seconds": 30.0, "wall_seconds": 60.0, "cores": 0.5, "gateways": 1}
    finalize(
        tmp_path / "poll", synthetic_run(1), slo=SLO,
        meta={"follow": "poll", "shape": {"shape": "spike"}, "gateway_cpu": poll_cpu},
    )  # fmt: skip
    push_cpu = {**poll_cpu, "seconds": 18.0, "cores": 0.3}
    finalize(
        tmp_path / "push", synthetic_run(2), slo=SLO, baseline_dir=tmp_path / "poll",
        meta={"follow": "push", "shape": {"shape": "spike"}, "gateway_cpu": push_cpu},
    )  # fmt: skip
    [poll] = read_summary(tmp_path / "push")["meta"]["baseline_decisions"]
    assert poll["run"] == "poll"
    assert (poll["follow"], poll["shape"], poll["gateway_cores"]) == ("poll", "spike", 0.5)
    assert poll["known_p99_ms"] > poll["known_p50_ms"] > 0
    page = (tmp_path / "push" / REPORT_FILE).read_text("utf-8")
    table = page[page.index("Waiting for decisions: poll or push") :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr><td class='l'>([^<]*)</td><td class='l'>([^<]*)</td>", table)
    assert rows == [("this run", "push"), ("poll", "poll")]
    assert "0.30 cores" in table
    assert "0.50 cores" in table
    assert "decisions by push" in page


def test_a_run_without_decisions_has_no_poll_or_push_table() -> None:
    rec = Recorder(window_s=5.0, t0=T0, clock=lambda: T0, cpu_clock=lambda: 0.0)
    rec.record("GET /resources", T0, 0.01, True)
    rec.stop(T0 + 10)
    assert "Waiting for decisions" not in page_for(rec, {})
