"""The read side's rules: what an event means for the views. Pure, no I/O."""

from consumer.domain.projection import (
    BookingStatus,
    BookingView,
    Notification,
    Projection,
    ResourceChange,
    ResourceDetails,
    ResourceView,
    blocking_statuses,
    next_booking,
    next_resource,
    notification_for,
    project,
)

__all__ = [
    "BookingStatus",
    "BookingView",
    "Notification",
    "Projection",
    "ResourceChange",
    "ResourceDetails",
    "ResourceView",
    "blocking_statuses",
    "next_booking",
    "next_resource",
    "notification_for",
    "project",
]
