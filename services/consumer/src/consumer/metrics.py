"""The consumer's Prometheus metrics, all in the app's own registry (DESIGN §5)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.messaging import PolicyMetrics
from shared.telemetry import LATENCY_BUCKETS

SERVICE = "consumer"


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.e2e_seconds = Histogram(
            "bookify_booking_e2e_seconds",
            "From the gateway accepting a command to its outcome being visible in the views.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "bookify_consumer_events",
            "Events handled by the read side, by type and by whether they were new.",
            ["type", "outcome"],
            registry=registry,
        )
        self.policy = PolicyMetrics(registry, SERVICE)
        self.consumer_lag = Gauge(
            "bookify_consumer_lag",
            "Records in the partition not yet consumed by the group (high watermark - position).",
            ["group", "topic", "partition"],
            registry=registry,
        )
