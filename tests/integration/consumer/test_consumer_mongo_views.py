"""MongoViewRepository on the real MongoDB-wire server: the guards live in the filters.

The status and version tables are the same as the domain's (tests/unit/consumer), so the
update filters are held to exactly the rules the in-memory fake applies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from consumer.adapters.mongo import MongoViewRepository
from consumer.domain import BookingStatus, Notification
from shared.readmodel import BOOKINGS, RESOURCES
from tests.support.builders import LATER, T0, booking, change

pytestmark = pytest.mark.integration

C, R, X = BookingStatus.CONFIRMED, BookingStatus.REJECTED, BookingStatus.CANCELLED


@pytest.fixture
def repo(mongo_db: AsyncDatabase[dict[str, Any]]) -> MongoViewRepository:
    return MongoViewRepository(mongo_db)


async def test_documents_have_the_documented_shapes(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    await repo.apply_resource(change(1, 10, named=True))
    await repo.apply_booking(booking(C))
    await repo.add_notification(
        Notification("e-1", "alice", "b-1", "r-1", C, "Booking b-1 confirmed", LATER)
    )
    await repo.mark_processed("e-1", "bookify.booking.confirmed.v1", LATER)

    assert await mongo_db[RESOURCES].find_one({"_id": "r-1"}) == {
        "_id": "r-1",
        "name": "Hall A",
        "capacity": 10,
        "available": 10,
        "version": 1,
        "created_at": T0,
        "updated_at": LATER,
    }
    assert await mongo_db[BOOKINGS].find_one({"_id": "b-1"}) == {
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

    written = await repo.apply_booking(booking(incoming, accepted_at=LATER))

    view = await repo.get_booking("b-1")
    assert view is not None
    assert written is (expected is not None)
    assert view.status is (expected or stored)


async def test_cancellation_keeps_the_acceptance_time_of_the_booking(
    repo: MongoViewRepository,
) -> None:
    await repo.apply_booking(booking(C, accepted_at=T0))

    await repo.apply_booking(booking(X, accepted_at=LATER))

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
    unnamed = await mongo_db[RESOURCES].find_one({"_id": "r-1"})
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


async def test_ping_answers_when_the_server_does(repo: MongoViewRepository) -> None:
    await repo.ping()


async def test_a_bulk_of_resource_changes_takes_new_ones_and_names_unnamed_ones(
    repo: MongoViewRepository, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    await repo.apply_resource(change(5, 3))  # r-1 first seen through a booking, unnamed
    others = [replace(change(1, 7, named=True), resource_id=f"r-{i}") for i in (2, 3)]

    taken = await repo.apply_resources([change(2, 9, named=True), *others])

    assert taken == 3  # r-1 named (its version 5 stays), r-2 and r-3 created
    r1 = await mongo_db[RESOURCES].find_one({"_id": "r-1"})
    assert r1 is not None
    assert (r1["name"], r1["available"], r1["version"]) == ("Hall A", 3, 5)
    for rid in ("r-2", "r-3"):
        doc = await mongo_db[RESOURCES].find_one({"_id": rid})
        assert doc is not None
        assert (doc["name"], doc["available"]) == ("Hall A", 7)
    unnamed = await repo.apply_resources([replace(change(1, 1), resource_id="r-4")])
    assert unnamed == 1
    r4 = await mongo_db[RESOURCES].find_one({"_id": "r-4"})
    assert r4 is not None
    assert (r4["name"], r4["capacity"], r4["created_at"]) == (None, None, None)


async def test_a_bulk_of_bookings_keeps_every_guard(repo: MongoViewRepository) -> None:
    await repo.apply_booking(booking(X))
    fresh = replace(booking(C), booking_id="b-2")

    stored = await repo.apply_bookings([booking(C), fresh])

    assert stored == 1  # b-1 stays cancelled; b-2 is new
    assert (await repo.get_booking("b-1")) == booking(X)
    assert (await repo.get_booking("b-2")) == fresh


async def test_marking_a_batch_processed_says_which_events_are_new(
    repo: MongoViewRepository,
) -> None:
    await repo.mark_processed("e-1", "t", LATER)

    new = await repo.mark_processed_many([("e-1", "t"), ("e-2", "t"), ("e-3", "t")], LATER)

    assert new == {"e-2", "e-3"}
    assert await repo.mark_processed_many([("e-2", "t")], LATER) == set()
