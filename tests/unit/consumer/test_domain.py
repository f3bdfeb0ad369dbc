"""The read side's rules, as a table: what each event projects to, and what may replace what."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import pytest

from consumer.domain import (
    BookingStatus,
    ResourceChange,
    ResourceDetails,
    ResourceView,
    next_booking,
    next_resource,
    notification_for,
    project,
)
from shared.events import RejectionReason
from tests.support.builders import LATER, T0, booking, change
from tests.unit.consumer.fakes import Events


def resource(*, version: int, available: int = 8, name: str | None = "Hall A") -> ResourceView:
    return ResourceView(
        resource_id="r-1",
        name=name,
        capacity=10 if name else None,
        available=available,
        version=version,
        created_at=T0 if name else None,
        updated_at=T0,
    )


# ------------------------------------------------------------------ project()


def test_resource_created_projects_availability_and_details_but_no_booking(events: Events) -> None:
    event = events.created(capacity=10, version=1)

    projection = project(event, LATER)

    assert projection.booking is None
    assert projection.resource == ResourceChange(
        resource_id=str(events.resource_id),
        available=10,
        version=1,
        at=LATER,
        details=ResourceDetails(name="Hall A", capacity=10, created_at=event.occurred_at),
    )


def test_booking_confirmed_projects_confirmed_booking_and_reduced_availability(
    events: Events,
) -> None:
    booking_id = uuid4()

    projection = project(events.confirmed(booking_id, available=8, version=2), LATER)

    assert projection.resource is not None
    assert (projection.resource.available, projection.resource.version) == (8, 2)
    assert projection.resource.details is None
    assert projection.booking is not None
    assert projection.booking.booking_id == str(booking_id)
    assert projection.booking.status is BookingStatus.CONFIRMED
    assert projection.booking.reason is None
    assert projection.booking.accepted_at == events.accepted_at
    assert projection.booking.updated_at == LATER


@pytest.mark.parametrize("reason", list(RejectionReason))
def test_booking_rejected_projects_reason_and_leaves_resource_alone(
    events: Events, reason: RejectionReason
) -> None:
    projection = project(events.rejected(uuid4(), reason=reason), LATER)

    assert projection.resource is None
    assert projection.booking is not None
    assert projection.booking.status is BookingStatus.REJECTED
    assert projection.booking.reason == reason.value


def test_booking_cancelled_projects_cancelled_booking_and_returned_seats(events: Events) -> None:
    projection = project(events.cancelled(uuid4(), available=10, version=3), LATER)

    assert projection.booking is not None
    assert projection.booking.status is BookingStatus.CANCELLED
    assert projection.resource is not None
    assert (projection.resource.available, projection.resource.version) == (10, 3)


# ------------------------------------------------------------------ booking status transitions

C, R, X = BookingStatus.CONFIRMED, BookingStatus.REJECTED, BookingStatus.CANCELLED


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        (None, C, C),
        (None, R, R),
        (None, X, X),  # a cancellation whose confirmation never reached us still shows
        (C, X, X),
        (C, C, None),  # redelivery
        (R, R, None),  # redelivery
        (C, R, None),  # a decision never replaces another decision
        (R, C, None),
        (X, C, None),  # cancelled is final: a late/redelivered confirmation changes nothing
        (X, R, None),
        (X, X, None),
    ],
)
def test_booking_status_only_moves_forward(
    stored: BookingStatus | None, incoming: BookingStatus, expected: BookingStatus | None
) -> None:
    current = booking(stored) if stored else None

    result = next_booking(current, replace(booking(incoming), updated_at=LATER))

    assert (result.status if result else None) == expected


def test_cancelling_keeps_the_time_the_booking_was_accepted() -> None:
    cancel = booking(X, accepted_at=LATER)

    result = next_booking(booking(C, accepted_at=T0), cancel)

    assert result is not None
    assert result.accepted_at == T0


# ------------------------------------------------------------------ resource version guard


@pytest.mark.parametrize(
    ("stored_version", "incoming_version", "taken"),
    [(1, 2, True), (2, 3, True), (1, 5, True), (2, 2, False), (3, 2, False), (5, 1, False)],
)
def test_availability_is_taken_only_from_a_newer_version(
    stored_version: int, incoming_version: int, taken: bool
) -> None:
    result = next_resource(
        resource(version=stored_version, available=8), change(incoming_version, 3)
    )

    if taken:
        assert result is not None
        assert (result.available, result.version, result.updated_at) == (3, incoming_version, LATER)
        assert result.name == "Hall A"
    else:
        assert result is None


def test_first_change_creates_the_view() -> None:
    result = next_resource(None, change(1, 10, named=True))

    assert result == ResourceView("r-1", "Hall A", 10, 10, 1, T0, LATER)


def test_booking_seen_before_its_resource_creates_an_unnamed_view() -> None:
    result = next_resource(None, change(2, 8))

    assert result is not None
    assert (result.name, result.capacity, result.available, result.version) == (None, None, 8, 2)


def test_late_resource_created_names_the_view_without_rolling_availability_back() -> None:
    result = next_resource(resource(version=4, available=6, name=None), change(1, 10, named=True))

    assert result is not None
    assert (result.name, result.capacity, result.created_at) == ("Hall A", 10, T0)
    assert (result.available, result.version) == (6, 4)


def test_redelivered_resource_created_changes_nothing() -> None:
    assert next_resource(resource(version=1, available=10), change(1, 10, named=True)) is None


# ------------------------------------------------------------------ notifications


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (C, "Booking b-1 confirmed: 2 seat(s) on Hall A"),
        (R, "Booking b-1 rejected (sold out): 2 seat(s) on Hall A"),
        (X, "Booking b-1 cancelled: 2 seat(s) on Hall A released"),
    ],
)
def test_notification_text_states_the_outcome(status: BookingStatus, text: str) -> None:
    note = notification_for(booking(status), event_id="e-1", resource_name="Hall A", now=LATER)

    assert note.text == text
    assert (note.event_id, note.kind, note.principal, note.created_at) == (
        "e-1",
        status,
        "alice",
        LATER,
    )


def test_notification_names_the_resource_by_id_when_its_name_is_unknown() -> None:
    rejected = replace(booking(R), reason="unknown_resource")

    note = notification_for(rejected, event_id="e-1", resource_name=None, now=LATER)

    assert note.text == "Booking b-1 rejected (unknown resource): 2 seat(s) on resource r-1"
