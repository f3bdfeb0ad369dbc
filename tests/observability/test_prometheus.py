"""Prometheus configuration, rules and rule unit tests, checked by promtool itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.conftest import run_promtool
from tests.observability.promql import OBSERVABILITY, RULE_FILES, RULES

PROMETHEUS = OBSERVABILITY / "prometheus"
CONFIGS = (PROMETHEUS / "prometheus.yml", PROMETHEUS / "prometheus.local.yml")
RULE_TESTS = sorted((RULES / "tests").glob("*.yml"))


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_prometheus_config_is_valid_with_its_rule_files(promtool: str, config: Path) -> None:
    result = run_promtool(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_and_local_configs_differ_only_in_target_addresses() -> None:
    compose, local = (_load(path) for path in CONFIGS)

    def without_targets(config: dict[str, Any]) -> object:
        jobs = config["scrape_configs"]
        return {**config, "scrape_configs": [{**job, "static_configs": None} for job in jobs]}

    assert without_targets(compose) == without_targets(local)
    local_targets = [
        target
        for job in local["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert all(target.startswith("127.0.0.1:") for target in local_targets), local_targets


def test_every_service_and_exporter_is_scraped() -> None:
    for config in CONFIGS:
        jobs = {job["job_name"] for job in _load(config)["scrape_configs"]}
        expected = {"gateway", "booking", "consumer", "otel-collector", "kafka-exporter", "locust"}
        assert expected <= jobs, config.name


def test_rule_files_are_valid(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule_test", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(promtool: str, rule_test: Path) -> None:
    result = run_promtool(promtool, "test", "rules", rule_test)
    assert result.returncode == 0, result.stdout + result.stderr


def _rules(kind: str) -> set[str]:
    return {
        rule[kind]
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if kind in rule
    }


def _rule_test_cases() -> list[dict[str, Any]]:
    return [case for path in RULE_TESTS for case in _load(path)["tests"]]


def test_every_recording_rule_has_an_expected_value_in_a_rule_test() -> None:
    asserted = [
        expr_test["expr"]
        for case in _rule_test_cases()
        for expr_test in case.get("promql_expr_test", [])
        if expr_test["exp_samples"]
    ]
    untested = {record for record in _rules("record") if not any(record in e for e in asserted)}
    assert not untested, f"recording rules without a promql_expr_test: {sorted(untested)}"


def test_every_alert_has_a_firing_and_a_quiet_rule_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _rule_test_cases():
        for alert_test in case.get("alert_rule_test", []):
            (firing if alert_test["exp_alerts"] else quiet).add(alert_test["alertname"])
    alerts = _rules("alert")
    assert alerts - firing == set(), f"alerts never tested firing: {sorted(alerts - firing)}"
    assert alerts - quiet == set(), f"alerts never tested quiet: {sorted(alerts - quiet)}"


def test_every_alert_has_severity_and_annotations_for_whoever_is_paged() -> None:
    for path in RULE_FILES:
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule[
                    "alert"
                ]


def test_design_alerts_are_all_there() -> None:
    assert _rules("alert") == {
        "BookifyHighErrorRatio",
        "BookifyHighLatencyP95",
        "BookifyServiceDown",
        "BookifyConsumerLagGrowing",
        "BookifyDeadLettersNotEmpty",
    }
