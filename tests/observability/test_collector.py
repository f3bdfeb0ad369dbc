"""The OTel collector config wires every pipeline to components it defines."""

from __future__ import annotations

from typing import Any

import yaml

from tests.observability.promql import OBSERVABILITY

CONFIG = OBSERVABILITY / "otel-collector" / "config.yaml"
KINDS = ("receivers", "processors", "exporters", "connectors")


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_pipelines_use_only_defined_components_and_every_component_is_used() -> None:
    config = _config()
    service = config["service"]
    defined = {kind: set(config.get(kind) or {}) for kind in KINDS}
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for name, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                # A connector is an exporter of one pipeline and a receiver of another.
                owner = "connectors" if component in defined["connectors"] else kind
                assert component in defined[owner], f"{name}: {component} is not defined"
                used[owner].add(component)
    assert used == defined
    assert set(service["extensions"]) == set(config["extensions"])


def test_otlp_comes_in_over_grpc_and_http_and_traces_go_to_tempo() -> None:
    config = _config()
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    traces = config["service"]["pipelines"]["traces"]
    assert "otlp/tempo" in traces["exporters"]
    assert traces["processors"][-1] == "batch"
    assert "health_check" in config["extensions"]


def test_span_metrics_are_exposed_where_prometheus_scrapes_them() -> None:
    config = _config()
    assert config["exporters"]["prometheus"]["endpoint"].endswith(":8889")
    prometheus = yaml.safe_load((OBSERVABILITY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    assert targets["otel-spanmetrics"] == ["otel-collector:8889"]
    assert targets["otel-collector"] == ["otel-collector:8888"]
    dimensions = config["connectors"]["spanmetrics"].get("dimensions", [])
    assert all("booking_id" not in d["name"] for d in dimensions), "one series per booking"
