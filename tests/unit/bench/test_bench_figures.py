"""`bookify bench generator | pipeline`: the figures they print, as a table and as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bookify.commands import bench as commands
from bookify_bench.pipeline import (
    BenchConfig,
    CeilingRun,
    GeneratorFigures,
    PipelineFigures,
    generator_report,
    report,
)
from bookify_bench.stages import GatewayFigures, gateway_report
from loadtests.openmodel import OpenModelResult, new_histogram


def a_result(rate: float = 2000, completed: int = 19_990, dropped: int = 10) -> OpenModelResult:
    result = OpenModelResult(rate=rate, duration=10, elapsed=10.0)
    result.intended, result.completed, result.dropped = completed + dropped, completed, dropped
    result.statuses[200] = completed
    for i in range(100):
        result.latency_us.record_value(1_000 + 100 * i)  # 1.0 .. 10.9 ms
        result.schedule_lag_us.record_value(10 + i)  # 10 .. 109 µs
    return result


def generator_figures() -> GeneratorFigures:
    return GeneratorFigures(
        rate=2000,
        open_model=a_result(),
        open_model_cpu_s=4.0,
        wrk_requests=70_000,
        wrk_seconds=10.0,
        wrk_cpu_s=1.0,
    )


def pipeline_figures() -> PipelineFigures:
    decided, seen = new_histogram(), new_histogram()
    decided.record_value(25_000)
    seen.record_value(40_000)  # the generator sees it later than the services did
    return PipelineFigures(
        a_result(rate=100, completed=1000, dropped=0), decided, 990, 10, 0, seen_latency_us=seen
    )


def test_the_generator_table_puts_the_open_model_beside_wrk_per_core() -> None:
    table = generator_report(generator_figures())
    assert "4997.5" in table  # 19,990 requests / 4 CPU-seconds
    assert "70000.0" in table
    assert "open model / wrk per core = 0.071" in table


def test_generator_json_has_the_same_figures_for_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(rate: float, duration: float, run_dir: Path) -> GeneratorFigures:
        assert (rate, duration) == (1500, 3)
        return generator_figures()

    monkeypatch.setattr(commands, "bench_generator", fake)
    done = CliRunner().invoke(
        commands.app, ["generator", "--rate", "1500", "--duration", "3", "--json"]
    )
    assert done.exit_code == 0, done.output
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["open_model"]["requests_per_core"] == pytest.approx(4997.5)
    assert data["open_model"]["schedule_lag_ms"]["p99"] == pytest.approx(0.108, abs=0.002)
    assert data["open_model"]["latency_ms"]["max"] == pytest.approx(10.9, rel=0.01)
    assert data["open_model"]["statuses"] == {"200": 19_990}
    assert data["open_model"]["dropped"] == 10
    assert data["wrk"]["requests_per_core"] == pytest.approx(70_000)
    assert data["open_model_over_wrk_per_core"] == pytest.approx(4997.5 / 70_000)


def test_pipeline_json_has_both_runs_and_their_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_pipeline(config: BenchConfig, progress: Any = print) -> PipelineFigures:
        assert config.kafka_bootstrap == "127.0.0.1:1"
        return pipeline_figures()

    async def fake_ceiling(rate: float, duration: float, run_dir: Path) -> CeilingRun:
        return CeilingRun(a_result(rate=rate, completed=2000, dropped=0), server_cpu_s=1.0)

    monkeypatch.setattr(commands, "bench_pipeline", fake_pipeline)
    monkeypatch.setattr(commands, "bench_ceiling", fake_ceiling)
    done = CliRunner().invoke(
        commands.app, ["pipeline", "--rate", "100", "--kafka", "127.0.0.1:1", "--json"]
    )
    assert done.exit_code == 0, done.output
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["pipeline"]["confirmed"] == 990
    assert data["pipeline"]["accepted_to_decided_ms"]["p50"] == pytest.approx(25, rel=0.01)
    assert data["pipeline"]["accept_seen_to_decision_seen_ms"]["p50"] == pytest.approx(40, rel=0.01)
    assert data["ceiling"]["throughput"] == pytest.approx(200)
    assert data["throughput_over_ceiling"] == pytest.approx(0.5)


def test_the_pipeline_table_says_nothing_of_what_was_not_recorded() -> None:
    figures = pipeline_figures()
    figures.confirm_latency_us = new_histogram()
    table = report(figures, a_result())
    assert "accepted→decided p50 (ms)" in table
    assert "n/a" in table
    assert re.search(r"as the generator saw it +40\.0\n", table)


def gateway_figures(ceiling_per_second: float) -> GatewayFigures:
    return GatewayFigures(
        accepted_per_second=900,
        ceiling_per_second=ceiling_per_second,
        offered=6000,
        accepted=9000,
        other_statuses={},
        accept_p99_ms=80.0,
        duration=10,
        gateway_cpu_s=9.0,
        ceiling_cpu_s=8.0,
    )


def test_the_gateway_table_warns_when_the_bare_endpoint_took_all_it_was_offered() -> None:
    saturated, flattered = gateway_figures(4000), gateway_figures(5990)

    assert "warning" not in gateway_report(saturated)
    assert "0.23 x the bare-FastAPI ceiling" in gateway_report(saturated)
    assert "offer more with --rate" in gateway_report(flattered)
    assert saturated.as_dict()["ceiling_saturated"] is True
    assert flattered.as_dict()["ceiling_saturated"] is False


def test_the_gateway_table_gives_each_servers_cpu_per_202() -> None:
    figures = gateway_figures(4000)  # 9 CPU-s for 9,000 202s; 8 CPU-s for 40,000
    table = gateway_report(figures)

    assert re.search(r"CPU per 202, gateway \(ms\) +1\.000\n", table)
    assert re.search(r"CPU per 202, bare FastAPI \(ms\) +0\.200\n", table)
    assert figures.as_dict()["cpu_ms_per_accept"] == pytest.approx(1.0)
    assert figures.as_dict()["ceiling_cpu_ms_per_accept"] == pytest.approx(0.2)


def test_a_gateway_that_accepted_nothing_has_no_cpu_figure() -> None:
    figures = replace(gateway_figures(4000), accepted=0, accepted_per_second=0)
    assert figures.cpu_ms_per_accept is None
    assert re.search(r"CPU per 202, gateway \(ms\) +n/a\n", gateway_report(figures))


def test_the_gateway_table_says_how_busy_each_server_was() -> None:
    figures = gateway_figures(4000)  # 9 and 8 CPU-s over a 10 s schedule
    table = gateway_report(figures)

    assert re.search(r"cores busy, gateway +0\.90\n", table)
    assert re.search(r"cores busy, bare FastAPI +0\.80\n", table)
    assert figures.as_dict()["gateway_cores"] == pytest.approx(0.9)
    assert figures.as_dict()["ceiling_cores"] == pytest.approx(0.8)
