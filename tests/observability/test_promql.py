"""Every PromQL expression in dashboards and rules parses, and names only known metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.observability.conftest import run_promtool
from tests.observability.promql import (
    RULE_FILES,
    Query,
    all_queries,
    dashboard_files,
    metric_names,
    substitute,
)

# The metric contract (DESIGN §5, observability/README.md). A name not here is a typo until
# someone adds it here *and* to the README.
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def _histogram(name: str) -> set[str]:
    return {name + suffix for suffix in HISTOGRAM_SERIES}


CONTRACT_METRICS: frozenset[str] = frozenset(
    {
        # Prometheus itself
        "up",
        "ALERTS",
        # gateway
        "bookify_http_requests_total",
        *_histogram("bookify_http_request_duration_seconds"),
        "bookify_push_streams_open",
        "bookify_push_streams_opened_total",
        "bookify_push_streams_refused_total",
        "bookify_push_streams_dropped_total",
        *_histogram("bookify_push_feed_lag_seconds"),
        # booking
        "bookify_bookings_total",
        # consumer
        *_histogram("bookify_booking_e2e_seconds"),
        "bookify_consumer_lag",
        # booking and consumer (shared.messaging.PolicyMetrics)
        "bookify_dlq_messages_total",
        "bookify_handler_failures_total",
        # FastStream's KafkaPrometheusMiddleware (faststream/prometheus/container.py)
        "faststream_received_messages_total",
        *_histogram("faststream_received_messages_size_bytes"),
        "faststream_received_messages_in_process",
        "faststream_received_processed_messages_total",
        *_histogram("faststream_received_processed_messages_duration_seconds"),
        "faststream_received_processed_messages_exceptions_total",
        "faststream_published_messages_total",
        *_histogram("faststream_published_messages_duration_seconds"),
        "faststream_published_messages_exceptions_total",
        # kafka-exporter (danielqsj/kafka_exporter)
        "kafka_consumergroup_lag",
        # OTel collector spanmetrics connector (namespace traces.span.metrics, unit ms)
        "traces_span_metrics_calls_total",
        *_histogram("traces_span_metrics_duration_milliseconds"),
        # Locust exporter (contract for the load-test engineer, observability/README.md)
        "locust_users",
        "locust_requests_total",
        *_histogram("locust_request_latency_seconds"),
        "locust_shape_phase",
    }
)


def _recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


QUERIES = all_queries()


def test_there_is_something_to_check() -> None:
    sources = {q.source for q in QUERIES}
    assert {path.name for path in dashboard_files()} == {
        "platform-overview.json",
        "load-test.json",
        "traces.json",
    }
    assert len(sources) == 5, sources
    assert len(QUERIES) > 50


def _describe(query: Query) -> str:
    return f"{query.source} / {query.title!r}: {query.expr}"


def test_every_expression_parses_with_prometheus_own_parser(promtool: str, tmp_path: Path) -> None:
    # promtool has no "parse this expression" command, but it parses every rule it checks:
    # each expression becomes a recording rule named after its position in QUERIES.
    rules = {
        "groups": [
            {"name": f"query {i}", "rules": [{"record": f"parse_check:q{i}", "expr": q.expr}]}
            for i, q in enumerate(QUERIES)
        ]
    }
    rule_file = tmp_path / "dashboard-expressions.yml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))

    result = run_promtool(promtool, "check", "rules", rule_file)

    output = result.stdout + result.stderr
    broken = sorted({int(i) for i in re.findall(r'"parse_check:q(\d+)"', output)})
    details = "\n".join(f"- {_describe(QUERIES[i])}" for i in broken)
    assert result.returncode == 0, f"PromQL that does not parse:\n{details}\n\n{output}"


def test_every_metric_name_is_in_the_contract_or_a_recording_rule() -> None:
    known = CONTRACT_METRICS | _recorded_names()
    unknown = [
        f"- {name} in {_describe(q)}"
        for q in QUERIES
        for name in sorted(metric_names(q.expr) - known)
    ]
    assert not unknown, "metric names outside the contract (typo?):\n" + "\n".join(unknown)


def test_every_dashboard_uses_recorded_series_that_exist() -> None:
    # Covered by the contract test too; this one names the *recording rule* family explicitly.
    recorded = _recorded_names()
    used = {name for q in QUERIES for name in metric_names(q.expr) if ":" in name}
    assert used <= recorded, sorted(used - recorded)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job, le) (rate(foo_bucket{a=~"x|y"}[5m]))', {"foo_bucket"}),
        ('a:b:rate1m{job=~"$service"} > 0.05', {"a:b:rate1m"}),
        ("histogram_quantile(0.95, x) or on (job) group_left (le) y offset 5m", {"x", "y"}),
        ('count(ALERTS{alertstate="firing"}) or vector(0)', {"ALERTS"}),
        ('label_replace(m, "group", "$1", "consumergroup", "(.*)") * 1e3', {"m"}),
        ("topk(1, max by (phase) (locust_shape_phase) == 1)", {"locust_shape_phase"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_misspelt_metric_is_caught() -> None:
    assert metric_names("rate(bookify_http_request_total[1m])") - CONTRACT_METRICS == {
        "bookify_http_request_total"
    }


def test_grafana_variables_are_substituted_and_unknown_ones_refused() -> None:
    assert substitute('rate(x{job=~"$service"}[$__rate_interval])') == 'rate(x{job=~".+"}[1m])'
    assert substitute("rate(x[${__rate_interval}])") == "rate(x[1m])"
    with pytest.raises(KeyError, match="nope"):
        substitute('x{a="$nope"}')
