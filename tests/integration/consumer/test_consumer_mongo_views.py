"""MongoViewRepository on the real MongoDB-wire server: the guards live in the filters.

The status and version tables are the same as the domain's (tests/unit/consumer), so the
update filters are held to exactly the rules the in-memory fake applies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from consumer.adapters.mongo import MongoViewRepository
from consumer.domain import (
    BookingStatus,
    BookingView,
    Notification,
    ResourceChange,
    ResourceDetails,
)

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)
C, R, X = BookingStatus.CONFIRMED, BookingStatus.REJECTED, BookingStatus.CANCELLED


@pytest.fixture
async def repo(mongo_db: AsyncDatabase[dict[str, Any]]) -> MongoViewRepository:
    views = MongoViewRepository(mongo_db)
    await views.ensure_indexes()
    return views


def booking(status: BookingStatus, *, at: datetime = T0) -> BookingView:
    return BookingView(
        booking_id="b-1",
        principal="alice",
        resource_id="r-1",
        quantity=2,
        status=status,
        reason="sold_out" if status is R else None,
        accepted_at=at,
        updated_at=at,
    )


def change(version: int, available: int, *, named: bool = False) -> ResourceChange:
    details = ResourceDetails("Hall A", 10, T0) if named else None
    return ResourceChange("r-1", available, version, LATER, details)


async def test_documents_have_the_documented_shapes(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    await repo.apply_resource(change(1, 10, named=True))
    await repo.apply_booking(booking(C))
    await repo.add_notification(
        Notification("e-1", "alice", "b-1", "r-1", C, "Booking b-1 confirmed", LATER)
    )
    await repo.mark_processed("e-1", "bookify.booking.confirmed.v1", LATER)

    assert await mongo_db["resources"].find_one({"_id": "r-1"}) == {
        "_id": "r-1",
        "name": "Hall A",
        "capacity": 10,
        "available": 10,
        "version": 1,
        "created_at": T0,
        "updated_at": LATER,
    }
    assert await mongo_db["bookings"].find_one({"_id": "b-1"}) == {
        "_id": "b-1",
        "principal": "alice",
        "resource_id": "r-1",
        "quantity": 2,
        "status": "confirmed",
        "reason": None,
        "accepted_at": T0,
        "updated_at": T0,
    }
    assert await mongo_db["notifications"].find_one({"_id": "e-1"}) == {
        "_id": "e-1",
        "principal": "alice",
        "booking_id": "b-1",
        "resource_id": "r-1",
        "kind": "confirmed",
        "text": "Booking b-1 confirmed",
        "created_at": LATER,
    }
    assert await mongo_db["processed_events"].find_one({"_id": "e-1"}) == {
        "_id": "e-1",
        "type": "bookify.booking.confirmed.v1",
        "processed_at": LATER,
    }


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        (None, C, C),
        (None, R, R),
        (None, X, X),
        (C, X, X),
        (C, C, None),
        (R, R, None),
        (C, R, None),
        (R, C, None),
        (X, C, None),
        (X, R, None),
        (X, X, None),
    ],
)
async def test_booking_status_only_moves_forward(
    repo: MongoViewRepository,
    stored: BookingStatus | None,
    incoming: BookingStatus,
    expected: BookingStatus | None,
) -> None:
    if stored:
        assert await repo.apply_booking(booking(stored))

    written = await repo.apply_booking(booking(incoming, at=LATER))

    view = await repo.get_booking("b-1")
    assert view is not None
    assert written is (expected is not None)
    assert view.status is (expected or stored)


async def test_cancellation_keeps_the_acceptance_time_of_the_booking(
    repo: MongoViewRepository,
) -> None:
    await repo.apply_booking(booking(C, at=T0))

    await repo.apply_booking(booking(X, at=LATER))

    view = await repo.get_booking("b-1")
    assert view is not None
    assert (view.status, view.accepted_at, view.updated_at) == (X, T0, LATER)


@pytest.mark.parametrize(
    ("stored_version", "incoming_version", "taken"),
    [(1, 2, True), (1, 5, True), (2, 2, False), (3, 2, False), (5, 1, False)],
)
async def test_availability_is_taken_only_from_a_newer_version(
    repo: MongoViewRepository, stored_version: int, incoming_version: int, taken: bool
) -> None:
    await repo.apply_resource(change(stored_version, 8, named=True))

    written = await repo.apply_resource(change(incoming_version, 3))

    view = await repo.get_resource("r-1")
    assert view is not None
    assert written is taken
    expected = (3, incoming_version) if taken else (8, stored_version)
    assert (view.available, view.version) == expected
    assert view.name == "Hall A"


async def test_booking_before_its_resource_then_late_creation_names_it_without_rollback(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    assert await repo.apply_resource(change(4, 6))
    unnamed = await mongo_db["resources"].find_one({"_id": "r-1"})
    assert unnamed is not None
    assert (unnamed["name"], unnamed["capacity"], unnamed["created_at"]) == (None, None, None)

    assert await repo.apply_resource(change(1, 10, named=True))
    assert not await repo.apply_resource(change(1, 10, named=True))  # redelivered

    view = await repo.get_resource("r-1")
    assert view is not None
    assert (view.name, view.capacity, view.created_at) == ("Hall A", 10, T0)
    assert (view.available, view.version) == (6, 4)


async def test_redelivered_notification_inserts_nothing(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    note = Notification("e-1", "alice", "b-1", "r-1", C, "Booking b-1 confirmed", LATER)

    assert await repo.add_notification(note)
    assert not await repo.add_notification(note)

    assert await mongo_db["notifications"].count_documents({}) == 1


async def test_an_event_is_marked_processed_once(repo: MongoViewRepository) -> None:
    assert not await repo.is_processed("e-1")

    assert await repo.mark_processed("e-1", "t", LATER)
    assert not await repo.mark_processed("e-1", "t", LATER)

    assert await repo.is_processed("e-1")


async def test_indexes_are_created_once_and_creating_them_again_is_harmless(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    await repo.ensure_indexes()

    bookings = await mongo_db["bookings"].index_information()
    notifications = await mongo_db["notifications"].index_information()
    assert bookings["principal"]["key"] == [("principal", 1)]
    assert notifications["principal_created_at"]["key"] == [("principal", 1), ("created_at", 1)]


async def test_ping_answers_when_the_server_does(repo: MongoViewRepository) -> None:
    await repo.ping()
