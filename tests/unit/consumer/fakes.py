"""The consumer unit tests' kit: an in-memory ViewRepository, event factories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from consumer.domain import (
    BookingView,
    Notification,
    ResourceChange,
    ResourceView,
    next_booking,
    next_resource,
)
from consumer.metrics import ConsumerMetrics
from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    RejectionReason,
    ResourceCreated,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeViewRepository:
    """The ViewRepository contract in memory, using the domain's rules for its guards.

    ``fail_once`` makes the named method raise once, to simulate a crash between steps;
    ``stale_dedupe`` makes ``is_processed`` answer False, as it does for a second consumer
    that checked just before the first one finished.
    """

    def __init__(self) -> None:
        self.bookings: dict[str, BookingView] = {}
        self.resources: dict[str, ResourceView] = {}
        self.notifications: dict[str, Notification] = {}
        self.processed: dict[str, tuple[str, datetime]] = {}
        # principal -> its list, oldest first; a booking keeps its place
        self.lists: dict[str, list[BookingView]] = {}
        self.fail_once: dict[str, BaseException] = {}
        self.stale_dedupe = False
        self.batch_calls = 0
        self.resource_reads = 0

    def _maybe_fail(self, method: str) -> None:
        if (error := self.fail_once.pop(method, None)) is not None:
            raise error

    async def is_processed(self, event_id: str) -> bool:
        return event_id in self.processed and not self.stale_dedupe

    async def mark_processed(self, event_id: str, event_type: str, at: datetime) -> bool:
        self._maybe_fail("mark_processed")
        if event_id in self.processed:
            return False
        self.processed[event_id] = (event_type, at)
        return True

    async def apply_resource(self, change: ResourceChange) -> bool:
        self._maybe_fail("apply_resource")
        new = next_resource(self.resources.get(change.resource_id), change)
        if new is None:
            return False
        self.resources[change.resource_id] = new
        return True

    async def apply_booking(self, view: BookingView) -> bool:
        self._maybe_fail("apply_booking")
        new = next_booking(self.bookings.get(view.booking_id), view)
        if new is None:
            return False
        self.bookings[view.booking_id] = new
        return True

    async def list_bookings(self, views: Sequence[BookingView]) -> int:
        self._maybe_fail("list_bookings")
        self.batch_calls += 1
        changed = 0
        for view in sorted(views, key=lambda v: v.accepted_at):
            listed = self.lists.setdefault(view.principal, [])
            place = next((i for i, v in enumerate(listed) if v.booking_id == view.booking_id), None)
            if place is None:
                stored = self.bookings.get(view.booking_id)
                listed.append(replace(view, accepted_at=stored.accepted_at) if stored else view)
                changed += 1
            elif (new := next_booking(listed[place], view)) is not None:
                listed[place] = new
                changed += 1
        return changed

    async def add_notification(self, notification: Notification) -> bool:
        self._maybe_fail("add_notification")
        if notification.event_id in self.notifications:
            return False
        self.notifications[notification.event_id] = notification
        return True

    # The batch forms: the same rules, one call each (the Mongo adapter makes them bulks).
    async def apply_resources(self, changes: Sequence[ResourceChange]) -> int:
        self.batch_calls += 1
        return sum([await self.apply_resource(change) for change in changes])

    async def apply_bookings(self, views: Sequence[BookingView]) -> int:
        self.batch_calls += 1
        return sum([await self.apply_booking(view) for view in views])

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        self.batch_calls += 1
        return sum([await self.add_notification(n) for n in notifications])

    async def mark_processed_many(
        self, events: Sequence[tuple[str, str]], at: datetime
    ) -> set[str]:
        self.batch_calls += 1
        return {
            event_id for event_id, kind in events if await self.mark_processed(event_id, kind, at)
        }

    async def get_resource(self, resource_id: str) -> ResourceView | None:
        self.resource_reads += 1
        return self.resources.get(resource_id)

    async def get_booking(self, booking_id: str) -> BookingView | None:
        return self.bookings.get(booking_id)

    async def ping(self) -> None:
        return None


@dataclass
class Events:
    """Builds a coherent story for one resource: ids shared, versions chosen by the test."""

    resource_id: UUID = field(default_factory=uuid4)
    accepted_at: datetime = T0

    def _common(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "event_id": uuid4(),
            "command_id": uuid4(),
            "resource_id": self.resource_id,
            "occurred_at": self.accepted_at,
            "accepted_at": self.accepted_at,
        }
        base.update(overrides)
        return base

    def created(self, *, capacity: int = 10, version: int = 1, **kw: Any) -> ResourceCreated:
        return ResourceCreated(
            **self._common(**kw),
            name="Hall A",
            capacity=capacity,
            available=capacity,
            version=version,
        )

    def confirmed(
        self,
        booking_id: UUID,
        *,
        quantity: int = 2,
        available: int = 8,
        version: int = 2,
        **kw: Any,
    ) -> BookingConfirmed:
        return BookingConfirmed(
            **self._common(**kw),
            booking_id=booking_id,
            principal="alice",
            quantity=quantity,
            available=available,
            version=version,
        )

    def rejected(
        self,
        booking_id: UUID,
        *,
        quantity: int = 2,
        reason: RejectionReason = RejectionReason.SOLD_OUT,
        **kw: Any,
    ) -> BookingRejected:
        return BookingRejected(
            **self._common(**kw),
            booking_id=booking_id,
            principal="alice",
            quantity=quantity,
            reason=reason,
        )

    def cancelled(
        self,
        booking_id: UUID,
        *,
        quantity: int = 2,
        available: int = 10,
        version: int = 3,
        **kw: Any,
    ) -> BookingCancelled:
        return BookingCancelled(
            **self._common(**kw),
            booking_id=booking_id,
            principal="alice",
            quantity=quantity,
            available=available,
            version=version,
        )


def sample(metrics: ConsumerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
