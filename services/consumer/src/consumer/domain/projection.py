"""How events become views: the read side's rules, as pure functions.

Kafka delivers at least once and a rebalance can replay a partition, so every rule here
is written for the second (and tenth) delivery of an event, and for an older event
arriving after a newer one:

- A resource's ``available`` comes from the booking service's ledger, whose ``version``
  (ledger seq) only grows. A change is taken only when its version is newer than the
  stored one, so the view never goes backwards.
- A booking's status only moves forward: nothing -> confirmed | rejected -> cancelled.
  A decision never replaces another decision and nothing replaces ``cancelled``.

The Mongo adapter states the same rules as update filters (see ``blocking_statuses``);
the in-memory fake used by the unit tests applies them through ``next_booking`` and
``next_resource``, and the integration tests hold both to the same behaviour. The views
themselves are the read model's types (:mod:`shared.readmodel`), which the gateway reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    Event,
    RejectionReason,
    ResourceCreated,
)
from shared.readmodel import BookingStatus, BookingView, ResourceView

# How far along its life a booking is; a status may only replace a lower rank.
_RANK = {BookingStatus.CONFIRMED: 1, BookingStatus.REJECTED: 1, BookingStatus.CANCELLED: 2}

_REASON_TEXT: dict[str, str] = {
    RejectionReason.SOLD_OUT.value: "sold out",
    RejectionReason.UNKNOWN_RESOURCE.value: "unknown resource",
    RejectionReason.PROCESSING_FAILED.value: "could not be processed, please try again",
}


@dataclass(frozen=True)
class ResourceDetails:
    """Facts fixed at creation: safe to write whenever they are missing."""

    name: str
    capacity: int
    created_at: datetime


@dataclass(frozen=True)
class ResourceChange:
    """What one event says about a resource: availability as of ledger ``version``."""

    resource_id: str
    available: int
    version: int
    at: datetime
    details: ResourceDetails | None = None

    def first_view(self) -> ResourceView:
        """The view of a resource this change is the first news of."""
        details = self.details
        return ResourceView(
            resource_id=self.resource_id,
            name=details.name if details else None,
            capacity=details.capacity if details else None,
            available=self.available,
            version=self.version,
            created_at=details.created_at if details else None,
            updated_at=self.at,
        )


@dataclass(frozen=True)
class Notification:
    event_id: str
    principal: str
    booking_id: str
    resource_id: str
    kind: BookingStatus
    text: str
    created_at: datetime


@dataclass(frozen=True)
class Projection:
    """Everything one event asserts about the views, before looking at what is stored."""

    resource: ResourceChange | None = None
    booking: BookingView | None = None


def project(event: Event, now: datetime) -> Projection:
    """What ``event`` asserts; event types the read side does not show project to nothing."""
    resource_id = str(event.resource_id)
    match event:
        case ResourceCreated():
            details = ResourceDetails(event.name, event.capacity, event.occurred_at)
            return Projection(
                resource=ResourceChange(resource_id, event.available, event.version, now, details)
            )
        case BookingConfirmed():
            return Projection(
                resource=ResourceChange(resource_id, event.available, event.version, now),
                booking=_booking(event, BookingStatus.CONFIRMED, None, now),
            )
        case BookingRejected():
            return Projection(
                booking=_booking(event, BookingStatus.REJECTED, event.reason.value, now)
            )
        case BookingCancelled():
            return Projection(
                resource=ResourceChange(resource_id, event.available, event.version, now),
                booking=_booking(event, BookingStatus.CANCELLED, None, now),
            )
        case _:
            return Projection()


def _booking(
    event: BookingConfirmed | BookingRejected | BookingCancelled,
    status: BookingStatus,
    reason: str | None,
    now: datetime,
) -> BookingView:
    return BookingView(
        booking_id=str(event.booking_id),
        principal=event.principal,
        resource_id=str(event.resource_id),
        quantity=event.quantity,
        status=status,
        reason=reason,
        accepted_at=event.accepted_at,
        updated_at=now,
    )


def blocking_statuses(new: BookingStatus) -> frozenset[BookingStatus]:
    """Stored statuses that ``new`` must not overwrite (itself included: redelivery)."""
    return frozenset(s for s, rank in _RANK.items() if rank >= _RANK[new])


def next_booking(current: BookingView | None, new: BookingView) -> BookingView | None:
    """The booking view after ``new``, or None when the stored one must stay as it is."""
    if current is None:
        return new
    if current.status in blocking_statuses(new.status):
        return None
    # The booking was accepted when it was requested, not when it was cancelled.
    return replace(new, accepted_at=current.accepted_at)


def next_resource(current: ResourceView | None, change: ResourceChange) -> ResourceView | None:
    """The resource view after ``change``, or None when nothing changes."""
    if current is None:
        return change.first_view()
    details = change.details
    if change.version > current.version:
        current = replace(
            current, available=change.available, version=change.version, updated_at=change.at
        )
        return _with_details(current, details) if details else current
    if details and current.name is None:
        # A late ResourceCreated still names a resource first seen through a booking.
        return _with_details(current, details)
    return None


def coalesce_changes(changes: Sequence[ResourceChange]) -> list[ResourceChange]:
    """One change per resource that :func:`next_resource` takes exactly as it would take
    ``changes`` one by one: the newest availability, with the details if any change has them
    (they are fixed at creation, so any copy of them is the same)."""
    latest: dict[str, ResourceChange] = {}
    for change in changes:
        kept = latest.get(change.resource_id)
        if kept is None:
            latest[change.resource_id] = change
            continue
        newer = change if change.version > kept.version else kept
        latest[change.resource_id] = replace(newer, details=change.details or kept.details)
    return list(latest.values())


def coalesce_bookings(views: Sequence[BookingView]) -> list[BookingView]:
    """One view per booking: ``views`` folded in order by :func:`next_booking`. Stored with
    the guard of its status, it leaves the view a one-by-one application would."""
    latest: dict[str, BookingView] = {}
    for view in views:
        folded = next_booking(latest.get(view.booking_id), view)
        if folded is not None:
            latest[view.booking_id] = folded
    return list(latest.values())


def _with_details(view: ResourceView, details: ResourceDetails) -> ResourceView:
    return replace(
        view, name=details.name, capacity=details.capacity, created_at=details.created_at
    )


def notification_for(
    booking: BookingView, *, event_id: str, resource_name: str | None, now: datetime
) -> Notification:
    """What the principal is told about its booking's outcome."""
    seats = f"{booking.quantity} seat(s) on {resource_name or f'resource {booking.resource_id}'}"
    match booking.status:
        case BookingStatus.CONFIRMED:
            text = f"Booking {booking.booking_id} confirmed: {seats}"
        case BookingStatus.REJECTED:
            reason = booking.reason or "unknown"
            why = _REASON_TEXT.get(reason, reason)
            text = f"Booking {booking.booking_id} rejected ({why}): {seats}"
        case BookingStatus.CANCELLED:
            text = f"Booking {booking.booking_id} cancelled: {seats} released"
    return Notification(
        event_id=event_id,
        principal=booking.principal,
        booking_id=booking.booking_id,
        resource_id=booking.resource_id,
        kind=booking.status,
        text=text,
        created_at=now,
    )
