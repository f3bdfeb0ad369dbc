"""Builders of the read side's values, shared by its unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumer.domain import ResourceChange, ResourceDetails
from shared.readmodel import BookingStatus, BookingView

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)


def booking(status: BookingStatus, *, accepted_at: datetime = T0) -> BookingView:
    """alice's booking b-1 of 2 seats on r-1, last changed when it was accepted."""
    return BookingView(
        booking_id="b-1",
        principal="alice",
        resource_id="r-1",
        quantity=2,
        status=status,
        reason="sold_out" if status is BookingStatus.REJECTED else None,
        accepted_at=accepted_at,
        updated_at=accepted_at,
    )


def change(version: int, available: int, *, named: bool = False) -> ResourceChange:
    """What an event says about r-1 at LATER; ``named`` as ResourceCreated (Hall A, 10)."""
    details = ResourceDetails("Hall A", 10, T0) if named else None
    return ResourceChange("r-1", available, version, LATER, details)
