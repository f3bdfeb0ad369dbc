"""The booking service's own Prometheus metrics (FastStream's middleware adds its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from booking.domain import EntryKind
from shared.messaging import PolicyMetrics

OUTCOMES = (EntryKind.CONFIRMED, EntryKind.REJECTED, EntryKind.CANCELLED)
SERVICE = "booking"


class BookingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.bookings = Counter(
            "bookify_bookings",
            "Booking decisions recorded in the ledger, counted once per new decision.",
            ["outcome"],
            registry=registry,
        )
        self.policy = PolicyMetrics(registry, SERVICE)
        # Export every series from the start, so rate() and alerts see a 0 and not a gap.
        for outcome in OUTCOMES:
            self.bookings.labels(outcome=outcome.value)

    def decided(self, kind: EntryKind) -> None:
        if kind in OUTCOMES:
            self.bookings.labels(outcome=kind.value).inc()
