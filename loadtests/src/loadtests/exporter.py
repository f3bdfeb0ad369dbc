"""Locust's live stats as Prometheus metrics (observability/README.md, "Locust exporter").

Served by the master (or the local runner) on ``:9646/metrics`` from its own
``CollectorRegistry``, so nothing else leaks in:

- ``locust_users`` (gauge) -- users running, summed over workers;
- ``locust_requests_total{method,name,status}`` (counter) -- ``status`` is ``success`` or
  ``failure`` as Locust counts them (expected 4xx of the error shape are successes);
  ``name`` is ``"<METHOD> <request name>"``, the recorder's endpoint name;
- ``locust_request_latency_seconds{name}`` (histogram, the services' LATENCY_BUCKETS) --
  client-side response time;
- ``locust_shape_phase{phase}`` (gauge) -- 1 for the active phase, 0 for the others.

The numbers are read from Locust's own stats at scrape time (a custom collector), so the
exporter costs nothing per request and sees the workers' requests too (the master's stats
aggregate them). Locust keeps response times rounded (to 2 significant digits above
100 ms), which is precise enough for a dashboard; the run's verdicts use HdrHistograms.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared.telemetry import LATENCY_BUCKETS

DEFAULT_PORT = 9646


class LocustCollector(Collector):
    """Reads ``runner`` (users, stats entries) and the current phase on every scrape."""

    def __init__(
        self,
        runner: Callable[[], Any],
        phase: Callable[[], str | None],
        phases: Callable[[], Sequence[str]],
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self._runner = runner
        self._phase = phase
        self._phases = phases
        self._bounds_ms = [b * 1000.0 for b in buckets]
        self._buckets = list(buckets)

    def collect(self) -> Iterable[Metric]:
        runner = self._runner()
        users = GaugeMetricFamily("locust_users", "Users currently running (sum over workers).")
        users.add_metric([], float(getattr(runner, "user_count", 0) if runner else 0))
        yield users

        requests = CounterMetricFamily(
            "locust_requests",
            "Requests completed, by Locust's success/failure verdict.",
            labels=["method", "name", "status"],
        )
        latency = HistogramMetricFamily(
            "locust_request_latency_seconds",
            "Client-side response time.",
            labels=["name"],
        )
        entries = getattr(getattr(runner, "stats", None), "entries", {}) if runner else {}
        by_name: dict[str, tuple[list[int], float]] = {}
        for (name, method), entry in sorted(entries.items()):
            label = f"{method} {name}"
            failures = int(entry.num_failures)
            requests.add_metric([method, label, "success"], float(entry.num_requests - failures))
            requests.add_metric([method, label, "failure"], float(failures))
            counts, total_ms = by_name.get(label, ([0] * (len(self._bounds_ms) + 1), 0.0))
            for response_ms, n in entry.response_times.items():
                counts[bisect.bisect_left(self._bounds_ms, float(response_ms))] += int(n)
            by_name[label] = (counts, total_ms + float(entry.total_response_time))
        for label, (counts, total_ms) in by_name.items():
            cumulative, buckets = 0, []
            for bound, n in zip([*self._buckets, float("inf")], counts, strict=True):
                cumulative += n
                buckets.append((_le(bound), float(cumulative)))
            latency.add_metric([label], buckets, total_ms / 1000.0)
        yield requests
        yield latency

        gauge = GaugeMetricFamily(
            "locust_shape_phase", "1 for the active phase of the load shape.", labels=["phase"]
        )
        active = self._phase()
        for phase in dict.fromkeys([*self._phases(), *([active] if active else [])]):
            gauge.add_metric([phase], 1.0 if phase == active else 0.0)
        yield gauge


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def make_registry(collector: LocustCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return registry


def serve(collector: LocustCollector, port: int = DEFAULT_PORT, addr: str = "0.0.0.0") -> Any:  # noqa: S104 - Prometheus in compose scrapes the master over the network
    """Start the /metrics server (port 0: disabled, returns None)."""
    if port == 0:
        return None
    return start_http_server(port, addr=addr, registry=make_registry(collector))
