"""The consumer's ports: what its handlers write views through (Mongo in production, a fake in
unit tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from consumer.domain import Notification, ResourceChange
from shared.readmodel import BookingView, ResourceView


class ViewRepository(Protocol):
    """Idempotent writes: each returns whether it changed anything, and repeating it is harmless.

    Implementations enforce the rules of :mod:`consumer.domain.projection` at write time,
    not by reading first, so a replayed or out-of-order event cannot regress a view even
    when two consumers briefly share a partition.
    """

    async def is_processed(self, event_id: str) -> bool:
        """Whether :meth:`mark_processed` already recorded this event."""
        ...

    async def mark_processed(self, event_id: str, event_type: str, at: datetime) -> bool:
        """Record the event as fully applied; False when it already was (the dedupe point)."""
        ...

    async def apply_resource(self, change: ResourceChange) -> bool:
        """Take ``change`` if its version is newer (and fill missing details); True if taken."""
        ...

    async def apply_booking(self, view: BookingView) -> bool:
        """Store ``view`` unless the stored status must not be replaced; True if stored."""
        ...

    async def add_notification(self, notification: Notification) -> bool:
        """Insert once per event id; False when it was already there."""
        ...

    async def apply_resources(self, changes: Sequence[ResourceChange]) -> int:
        """:meth:`apply_resource` for each change (one per resource), in few round trips;
        how many were taken."""
        ...

    async def apply_bookings(self, views: Sequence[BookingView]) -> int:
        """:meth:`apply_booking` for each view (one per booking), in one round trip; how
        many were stored."""
        ...

    async def list_bookings(self, views: Sequence[BookingView]) -> int:
        """Each view (as stored by :meth:`apply_bookings`) in its principal's list of
        bookings: a booking listed for the first time takes the list's next number, one
        listed already takes the view's status when :meth:`apply_booking` would; how many
        entries changed."""
        ...

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        """:meth:`add_notification` for each, in one round trip; how many were new."""
        ...

    async def mark_processed_many(
        self, events: Sequence[tuple[str, str]], at: datetime
    ) -> set[str]:
        """:meth:`mark_processed` for each (event_id, event_type); the ids newly marked."""
        ...

    async def get_resource(self, resource_id: str) -> ResourceView | None: ...

    async def get_booking(self, booking_id: str) -> BookingView | None: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached (readiness)."""
        ...
