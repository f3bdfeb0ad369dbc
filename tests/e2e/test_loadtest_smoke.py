"""`bookify load` end to end: every shape, briefly, against the services as real processes.

Each run is a real `bookify load` process (Locust headless, or the open model) against the
session's stack (environment=test, so fault injection is allowed), bounded to 10-16 s and a
handful of users. The SLO file here is lenient on purpose: these runs check the harness
(exit codes, run folders, phases, the exporter, faults, the baseline verdict), not the
platform's speed on a shared CI machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookify_platform.infra.process import free_ports
from bookify_platform.services import Platform
from tests.support.auth import bearer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(load_stack: Platform) -> Platform:
    """This module's load runs go to a stack of their own (see tests.stack.load_stack)."""
    return load_stack


LENIENT_SLO = """
[defaults]
p95_ms = 3000
p99_ms = 8000
max_error_ratio = 0.01

[e2e]
p95_ms = 15000

[run]
max_error_ratio = 0.01
min_rate_ratio = 0.8

[baseline]
percentiles = [50, 95]
resamples = 500
min_windows = 5
skip_first = 1
"""

LOOK = "GET /v1/resources/{id}"
LOOK_BUCKET = f'locust_request_latency_seconds_bucket{{le="0.005",name="{LOOK}"}}'
RUN_LIMIT_S = 90  # a bounded run never takes this long; a hung one fails the test


def bookify_load(
    stack: Platform, tmp: Path, shape: str, *args: str, exporter_port: int = 0
) -> tuple[int, dict[str, Any], Path, str]:
    """Run `bookify load <shape> ...`; (exit code, summary.json, run folder, output)."""
    run_dir = tmp / f"run-{shape}-{time.monotonic_ns()}"
    slo = tmp / "slo.toml"
    slo.write_text(LENIENT_SLO, "utf-8")
    cmd = [
        sys.executable, "-c", "from bookify.cli import main; main()", "load", shape,
        "--host", stack["gateway"].url,
        "--booking-url", stack["booking"].url,
        "--consumer-url", stack["consumer"].url,
        "--slo", str(slo),
        "--run-dir", str(run_dir),
        "--window", "2",
        "--seed-resources", "4",
        "--principals", "10",
        "--think-time", "0.05,0.2",
        "--progress-every", "4",
        "--exporter-port", str(exporter_port),
        *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False)
    output = done.stdout + done.stderr
    summary_path = run_dir / "summary.json"
    assert summary_path.exists(), output
    assert (run_dir / "report.html").read_text("utf-8").count("<svg") >= 3
    assert (run_dir / "windows.jsonl").exists()
    summary: dict[str, Any] = json.loads(summary_path.read_text("utf-8"))
    assert summary["exit_code"] == done.returncode, output
    assert summary["total"]["count"] > 0, output
    return done.returncode, summary, run_dir, output


def phases(summary: dict[str, Any]) -> list[str]:
    return [w["phase"] for w in summary["windows"] if w["phase"]]


def server_errors(summary: dict[str, Any]) -> int:
    return sum(
        n
        for statuses in summary["statuses"].values()
        for status, n in statuses.items()
        if status.startswith("5")
    )


def client_errors(summary: dict[str, Any]) -> int:
    return sum(
        n
        for statuses in summary["statuses"].values()
        for status, n in statuses.items()
        if status.startswith("4")
    )


def set_gateway_faults(stack: Platform, settings: dict[str, Any]) -> dict[str, Any]:
    response = httpx.put(
        f"{stack['gateway'].url}/v1/admin/faults",
        json=settings,
        headers=bearer("smoke-ops", "resources:admin"),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loadtests")


@pytest.fixture(scope="module")
def baseline(stack: Platform, workdir: Path) -> tuple[dict[str, Any], Path]:
    """A soak run that passes, with the Locust exporter scraped while it runs."""
    (port,) = free_ports(1)
    scraped: list[str] = []
    run_dir = workdir / "baseline-soak"

    def scrape_until_done(proc: subprocess.Popen[str]) -> None:
        while proc.poll() is None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                text = ""
            if 'locust_shape_phase{phase="soak"} 1.0' in text and LOOK_BUCKET in text:
                scraped.append(text)
                return
            time.sleep(0.5)

    slo = workdir / "slo.toml"
    slo.write_text(LENIENT_SLO, "utf-8")
    cmd = [
        sys.executable, "-c", "from bookify.cli import main; main()", "load", "soak",
        "--users", "4", "--duration", "12", "--host", stack["gateway"].url,
        "--slo", str(slo), "--run-dir", str(run_dir), "--window", "1",
        "--seed-resources", "4", "--principals", "10", "--think-time", "0.05,0.2",
        "--exporter-port", str(port),
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        scrape_until_done(proc)
        output, _ = proc.communicate(timeout=RUN_LIMIT_S)
    assert proc.returncode == 0, output
    assert scraped, f"the exporter never showed the soak phase on :{port}\n{output}"
    text = scraped[0]
    assert "locust_users " in text
    assert f'locust_requests_total{{method="GET",name="{LOOK}",status="success"}}' in text
    assert "phase=soak" in output
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text("utf-8"))
    return summary, run_dir


def test_soak_passes_and_exports_live_stats(baseline: tuple[dict[str, Any], Path]) -> None:
    summary, _ = baseline
    assert summary["status"] == "PASS"
    assert set(phases(summary)) == {"soak"}
    assert summary["e2e"]["count"] > 0
    assert summary["total"]["errors"] == 0
    assert server_errors(summary) == 0


def test_an_injected_gateway_slowdown_is_a_regression_against_the_baseline(
    stack: Platform, workdir: Path, baseline: tuple[dict[str, Any], Path]
) -> None:
    _, baseline_dir = baseline
    set_gateway_faults(stack, {"latency_ms": 150})
    try:
        code, summary, _, output = bookify_load(
            stack, workdir, "soak", "--users", "4", "--duration", "12", "--window", "1",
            "--baseline", str(baseline_dir),
        )  # fmt: skip
    finally:
        assert set_gateway_faults(stack, {})["settings"]["latency_ms"] == 0
    assert code == 4, output
    assert summary["status"] == "REGRESSION"
    regressions = [c for c in summary["comparisons"] if c["verdict"] == "REGRESSION"]
    assert regressions, summary["comparisons"]
    assert all(c["ratio"] > 1.1 for c in regressions)


def test_spike_goes_up_tenfold_and_back_and_passes(stack: Platform, workdir: Path) -> None:
    code, summary, _, output = bookify_load(
        stack, workdir, "spike", "--users", "1", "--duration", "12"
    )
    assert code == 0, output
    seen = phases(summary)
    assert seen.index("baseline") < seen.index("spike") < seen.index("recovery")
    users = {w["phase"]: w["users"] for w in summary["windows"] if w["phase"]}
    assert users["spike"] == 10
    assert "recovery_s" in summary["meta"]


def test_stress_steps_up_and_reports_its_capacity(stack: Platform, workdir: Path) -> None:
    code, summary, _, output = bookify_load(
        stack, workdir, "stress", "--users", "2", "--step-users", "2", "--step-seconds", "4",
        "--duration", "12", "--window", "1",
    )  # fmt: skip
    assert code == 0, output
    assert phases(summary)[0] == "step-1"
    assert "step-3" in phases(summary)
    steps = summary["meta"]["shape"]["steps"]
    assert [s["level"] for s in steps] == [2, 4, 6]
    assert all(s["healthy"] and s["count"] > 0 for s in steps)
    assert summary["meta"]["capacity_users"] == 6
    assert "capacity: at least 6 users" in output


def test_error_shape_counts_expected_4xx_as_success_and_injected_5xx_as_failure(
    stack: Platform, workdir: Path
) -> None:
    code, summary, _, output = bookify_load(
        stack, workdir, "error", "--users", "6", "--duration", "12", "--window", "1",
        "--faults", "gateway.error_rate=0.3,gateway.latency_ms=20,booking.error_rate=0.1",
    )  # fmt: skip
    assert code == 3, output  # the injected 503s breach the error-ratio SLO
    assert phases(summary) == sorted(phases(summary), key=["errors", "faults", "recovery"].index)
    switched_on = output.split("faults on:")[1].splitlines()[0]
    assert "gateway" in switched_on
    assert "booking" in switched_on
    assert "faults off" in output
    bad = {n: s for n, s in summary["endpoints"].items() if "[" in n}
    assert sum(s["count"] for s in bad.values()) > 0
    assert client_errors(summary) > 0
    fives = server_errors(summary)
    assert fives > 0
    # Every failure is an injected 5xx: not one expected 4xx was counted against the run.
    assert summary["total"]["errors"] == fives
    rows = list(zip(summary["windows"], summary["series"]["all"], strict=True))
    assert all(r["errors"] == 0 for w, r in rows if w["phase"] == "errors")
    last_recovery = [r for w, r in rows if w["phase"] == "recovery"][-1]
    assert last_recovery["count"] > 0
    assert last_recovery["errors"] == 0  # faults switched off again
    state = httpx.get(
        f"{stack['gateway'].url}/v1/admin/faults",
        headers=bearer("smoke-ops", "resources:admin"),
        timeout=5,
    ).json()
    assert state["settings"]["error_rate"] == 0


def test_the_open_model_holds_its_arrival_rate(stack: Platform, workdir: Path) -> None:
    code, summary, _, output = bookify_load(
        stack, workdir, "soak", "--open", "--rate", "10", "--duration", "8"
    )
    assert code == 0, output
    open_model = summary["open_model"]
    assert open_model["intended_rate"] == pytest.approx(10, rel=0.05)
    assert open_model["achieved_rate"] >= 0.8 * open_model["intended_rate"]
    assert summary["meta"]["arrivals"]["dropped"] == 0
    assert "arrivals intended" in output


def test_an_unreachable_gateway_is_a_clear_error(workdir: Path) -> None:
    (port,) = free_ports(1)
    done = subprocess.run(
        [
            sys.executable, "-c", "from bookify.cli import main; main()", "load", "soak",
            "--host", f"http://127.0.0.1:{port}", "--duration", "5",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "make up" in done.stderr


@pytest.mark.parametrize(
    "model", [("--users", "4"), ("--open", "--rate", "8")], ids=["locust", "open-model"]
)
def test_clients_learn_decisions_by_push_and_the_report_sets_them_beside_polling(
    stack: Platform,
    workdir: Path,
    baseline: tuple[dict[str, Any], Path],
    model: tuple[str, ...],
) -> None:
    _, polled = baseline
    _, summary, run_dir, output = bookify_load(
        stack, workdir, "soak", *model, "--duration", "12", "--window", "1",
        "--follow", "push", "--baseline", str(polled),
    )  # fmt: skip
    meta = summary["meta"]
    assert meta["follow"] == "push"
    assert summary["e2e"]["count"] > 0, output
    streams = summary["endpoints"]["GET /v1/bookings/{id}/events"]
    assert streams["count"] > 0
    assert streams["errors"] == 0, summary["statuses"]
    assert "GET /v1/bookings/{id}" not in summary["endpoints"]  # nobody polled
    assert meta["gateway_cpu"]["cores"] > 0
    [poll] = meta["baseline_decisions"]
    assert (poll["follow"], poll["shape"]) == ("poll", "soak")
    assert poll["decisions"] > 0
    report = (run_dir / "report.html").read_text("utf-8")
    assert "Waiting for decisions: poll or push" in report
