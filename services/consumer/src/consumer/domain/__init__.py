"""The read side's rules: what an event means for the views. Pure, no I/O."""

from consumer.domain.projection import (
    Notification,
    Projection,
    ResourceChange,
    ResourceDetails,
    blocking_statuses,
    coalesce_bookings,
    coalesce_changes,
    next_booking,
    next_resource,
    notification_for,
    project,
)
from shared.readmodel import BookingStatus, BookingView, ResourceView

__all__ = [
    "BookingStatus",
    "BookingView",
    "Notification",
    "Projection",
    "ResourceChange",
    "ResourceDetails",
    "ResourceView",
    "blocking_statuses",
    "coalesce_bookings",
    "coalesce_changes",
    "next_booking",
    "next_resource",
    "notification_for",
    "project",
]
