"""Grafana provisioning and dashboards: valid JSON that points at the provisioned datasources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.promql import DASHBOARDS, OBSERVABILITY, dashboard_files

PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"


def _datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((PROVISIONING / "datasources").glob("*.yml")):
        for datasource in yaml.safe_load(path.read_text())["datasources"]:
            found[datasource["uid"]] = datasource
    return found


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _load(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


DASHBOARD_PATHS = dashboard_files()


def test_prometheus_exemplars_link_to_the_provisioned_trace_backend() -> None:
    datasources = _datasources()
    assert datasources["prometheus"]["type"] == "prometheus"
    assert datasources["tempo"]["type"] == "tempo"
    destinations = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # The consumer's e2e exemplar label is trace_id (consumer/service_layer/handlers.py).
    assert {"name": "trace_id", "datasourceUid": "tempo"} in destinations


def test_dashboard_provider_loads_from_where_the_dashboards_are_mounted() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARDS.name == "dashboards"


@pytest.mark.parametrize("path", DASHBOARD_PATHS, ids=lambda p: p.name)
def test_dashboard_is_a_provisionable_grafana_dashboard(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["uid"].startswith("bookify-")
    assert dashboard["title"].startswith("Bookify / ")
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None  # provisioned dashboards get their id from Grafana
    panels = _panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel.get("title"), panel
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_PATHS, ids=lambda p: p.name)
def test_every_panel_and_target_uses_a_provisioned_datasource(path: Path) -> None:
    provisioned = {uid: ds["type"] for uid, ds in _datasources().items()}
    for panel in _panels(_load(path)["panels"]):
        refs = [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]
        for ref in filter(None, refs):
            assert provisioned.get(ref["uid"]) == ref["type"], (panel["title"], ref)
        for target in panel.get("targets", []):
            assert target.get("refId"), panel["title"]
            assert ("expr" in target) or ("query" in target), panel["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [_load(path)["uid"] for path in DASHBOARD_PATHS]
    assert len(uids) == len(set(uids))


def _targets(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in _panels(_load(DASHBOARDS / name)["panels"])
        for target in panel.get("targets", [])
    ]


def test_e2e_latency_is_shown_with_exemplars_on_the_raw_histogram() -> None:
    # Recording rules drop exemplars: only queries on the _bucket series can show them.
    exemplar_exprs = [
        t["expr"] for _, t in _targets("platform-overview.json") if t.get("exemplar") is True
    ]
    assert exemplar_exprs
    assert all("bookify_booking_e2e_seconds_bucket" in expr for expr in exemplar_exprs)


def test_platform_overview_covers_red_e2e_bookings_lag_and_dlq() -> None:
    exprs = " ".join(t["expr"] for _, t in _targets("platform-overview.json"))
    for needle in (
        "job:bookify_requests:rate1m",
        "job:bookify_error_ratio:rate1m",
        "job:bookify_latency_seconds:p50_1m",
        "job:bookify_latency_seconds:p95_1m",
        "job:bookify_latency_seconds:p99_1m",
        "bookify_booking_e2e_seconds_bucket",
        "outcome:bookify_bookings:rate1m",
        "group_topic:bookify_consumer_lag:sum",
        "bookify_dlq_messages_total",
    ):
        assert needle in exprs, needle


def test_load_test_dashboard_shows_load_beside_the_system() -> None:
    exprs = " ".join(t["expr"] for _, t in _targets("load-test.json"))
    for needle in (
        "locust_users",
        "locust_requests_total",
        "locust_request_latency_seconds_bucket",
        "locust_shape_phase",
        "job:bookify_latency_seconds:p95_1m",
        "bookify:booking_e2e_seconds:p95_1m",
    ):
        assert needle in exprs, needle


def test_traces_dashboard_searches_tempo_by_booking_id_and_service() -> None:
    queries = [t["query"] for _, t in _targets("traces.json") if t["datasource"]["uid"] == "tempo"]
    assert any(".bookify.booking_id" in q and "$booking_id" in q for q in queries)
    assert any("resource.service.name" in q and "$service" in q for q in queries)
