"""Every dashboard panel and recording rule has data on a real Prometheus, and alerts fire.

A local Prometheus (Debian's package, the same rule files CI checks with promtool) scrapes
the session's services and a `bookify load soak` run's Locust exporter every second, while
injected faults turn a quarter of the gateway's answers into 5xx and make a fifth of the
booking handler's attempts fail (and be retried). Each expression must return data at
some point during the run, the error-ratio alert must go pending, and a few poison messages
(failing every attempt, so dead-lettered) must make the DLQ alert fire.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookify_platform.infra.process import free_ports
from bookify_platform.observe import LocalPrometheus
from bookify_platform.services import Platform
from tests.observability.promql import Query, all_queries, metric_names
from tests.support.auth import bearer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(load_stack: Platform) -> Platform:
    """This module's load runs go to a stack of their own (see tests.stack.load_stack)."""
    return load_stack


# Produced only by components that run under compose (the OTel collector's span metrics,
# kafka-exporter): checked for syntax by tests/observability, for data only there.
COMPOSE_ONLY_METRICS = {
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_milliseconds_bucket",
    "kafka_consumergroup_lag",
}
LOAD_SECONDS = 25


def needs_data(query: Query) -> bool:
    if query.source.endswith("alerts.yml"):
        return False  # an alert's expression is empty until it fires; checked below
    names = metric_names(query.expr)
    return not names or not names <= COMPOSE_ONLY_METRICS


@pytest.fixture
def prometheus(stack: Platform, tmp_path: Path) -> Iterator[tuple[LocalPrometheus, int]]:
    port, locust_port = free_ports(2)
    ports = {name: svc.port for name, svc in stack.services.items()}
    server = LocalPrometheus(tmp_path, ports, port=port, locust_port=locust_port, interval="1s")
    server.start()
    try:
        yield server, locust_port
    finally:
        server.stop()


def inject_faults(stack: Platform, gateway: dict[str, Any], booking: dict[str, Any]) -> None:
    """Gateway: a share of 5xx answers; booking: failing attempts, and poison messages."""
    headers = bearer("ops", "resources:admin")
    for url, settings in (
        (f"{stack['gateway'].url}/v1/admin/faults", gateway),
        (f"{stack['booking'].url}/admin/faults", booking),
    ):
        response = httpx.put(url, json=settings, headers=headers, timeout=5)
        assert response.status_code == 200, response.text


def wait_for_users(exporter_port: int, run: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=2).text
        except httpx.TransportError:
            text = ""
        if any(
            line.startswith("locust_users ") and not line.endswith(" 0.0")
            for line in text.splitlines()
        ):
            return
        time.sleep(0.5)
    raise AssertionError("the load run never got its users going")


def has_data(client: httpx.Client, expr: str) -> bool:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return bool(body["data"]["result"])


ERROR_ALERT = 'ALERTS{alertname="BookifyHighErrorRatio", job="gateway"}'
DLQ_ALERT = 'ALERTS{alertname="BookifyDeadLettersNotEmpty", service="booking", alertstate="firing"}'


def test_every_panel_and_rule_has_data_and_the_alerts_go_off(
    stack: Platform, prometheus: tuple[LocalPrometheus, int], tmp_path: Path
) -> None:
    server, locust_port = prometheus
    queries = [q for q in all_queries() if needs_data(q)]
    assert len(queries) > 40
    pending = {q.expr: q for q in queries}
    alerts = {ERROR_ALERT: False, DLQ_ALERT: False}
    load = [
        sys.executable, "-c", "from bookify.cli import main; main()", "load", "soak",
        "--users", "6", "--duration", str(LOAD_SECONDS), "--host", stack["gateway"].url,
        "--run-dir", str(tmp_path / "run"), "--exporter-port", str(locust_port),
        "--seed-resources", "3", "--principals", "10", "--think-time", "0.05,0.2",
    ]  # fmt: skip
    try:
        with (
            subprocess.Popen(load, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as run,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            # Faults only once the run has seeded its data and its users are going.
            wait_for_users(locust_port, run)
            inject_faults(
                stack,
                gateway={"error_rate": 0.25},
                booking={"error_rate": 0.2, "poison_rate": 0.05},
            )
            deadline = time.monotonic() + LOAD_SECONDS + 60
            while (pending or not all(alerts.values())) and run.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(2)
                for expr in [e for e in pending if has_data(client, e)]:
                    del pending[expr]
                for alert in [a for a, seen in alerts.items() if not seen]:
                    alerts[alert] = has_data(client, alert)
            # Let the bounded run finish on its own, so Locust stops cleanly.
            output = (run.communicate(timeout=LOAD_SECONDS + 60)[0] or b"").decode(errors="replace")
    finally:
        inject_faults(stack, gateway={}, booking={})
    empty = sorted(f"{q.source}: {q.title}: {q.expr}" for q in pending.values())
    assert empty == [], (
        f"{len(empty)} expressions never returned data:\n" + "\n".join(empty) + output[-3000:]
    )
    assert alerts[ERROR_ALERT], "BookifyHighErrorRatio never went pending with 25% 5xx"
    assert alerts[DLQ_ALERT], "BookifyDeadLettersNotEmpty never fired with 5% poison messages"
