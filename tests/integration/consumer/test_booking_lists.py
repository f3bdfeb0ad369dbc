"""The principals' lists of bookings on the real MongoDB-wire server: kept by the consumer,
read by the gateway, and every read or guarded write of either is by ``_id`` equality.

FerretDB v1 serves nothing but ``{_id: value}`` from an index (DESIGN §4): a list read any
other way scans every booking. A command listener on clients of the real server records the
filters both sides send, so the proof does not depend on the number of documents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from consumer.adapters.mongo import LIST_PLACES, MongoViewRepository
from gateway.adapters.mongo import MongoViewReader
from shared.mongo import Document
from shared.readmodel import (
    BOOKING_LISTS,
    BookingStatus,
    BookingView,
    list_entry_to_document,
    list_head_id,
)
from tests.support.builders import LATER, T0, booking
from tests.support.mongo_commands import Filters, monitored

pytestmark = pytest.mark.integration

C, R, X = BookingStatus.CONFIRMED, BookingStatus.REJECTED, BookingStatus.CANCELLED


@pytest.fixture
def filters() -> Filters:
    return Filters()


@pytest.fixture
async def db(
    mongo: Any, mongo_db: AsyncDatabase[Document], filters: Filters
) -> AsyncIterator[AsyncDatabase[Document]]:
    async with monitored(mongo.uri, mongo_db.name, filters) as db:
        yield db


def of(number: int, status: BookingStatus = C, *, principal: str = "alice") -> BookingView:
    """Booking b-<number>, accepted <number> seconds after T0."""
    at = T0 + timedelta(seconds=number)
    return replace(
        booking(status), booking_id=f"b-{number}", principal=principal, accepted_at=at,
        updated_at=at,
    )  # fmt: skip


async def listed(db: AsyncDatabase[Document], principal: str = "alice") -> list[BookingView]:
    """The principal's list as the gateway reads it, newest first."""
    reader = MongoViewReader(db)
    newest = await reader.newest_listed(principal)
    views = await reader.listed(principal, range(newest, 0, -1))
    assert None not in views  # dense: every number up to the newest is an entry
    return [v for v in views if v is not None]


async def test_entries_have_the_documented_shape(db: AsyncDatabase[Document]) -> None:
    repo = MongoViewRepository(db)
    await repo.list_bookings([of(1)])
    first_hint = await db[BOOKING_LISTS].find_one({"_id": list_head_id("alice")})
    await repo.list_bookings([of(2)])

    assert await db[BOOKING_LISTS].find_one({"_id": "alice#1"}) == {
        "_id": "alice#1",
        "booking_id": "b-1",
        "principal": "alice",
        "resource_id": "r-1",
        "quantity": 2,
        "status": "confirmed",
        "reason": None,
        "accepted_at": T0 + timedelta(seconds=1),
        "updated_at": T0 + timedelta(seconds=1),
    }
    assert first_hint is None  # a reader starts at 1 without one
    assert await db[BOOKING_LISTS].find_one({"_id": list_head_id("alice")}) == {
        "_id": "alice#head",
        "newest": 2,
    }
    assert await db[LIST_PLACES].find_one({"_id": "b-1"}) == {
        "_id": "b-1",
        "principal": "alice",
        "number": 1,
    }


async def test_a_booking_keeps_its_place_takes_later_statuses_and_is_listed_once(
    db: AsyncDatabase[Document], filters: Filters
) -> None:
    repo = MongoViewRepository(db)
    await repo.list_bookings([of(1), of(2, R)])
    cancelled = replace(of(1, X), accepted_at=LATER, updated_at=LATER)  # the cancel's times
    await repo.list_bookings([cancelled])
    await repo.list_bookings([of(1), of(2, R)])  # redelivered decisions
    await repo.list_bookings([cancelled])  # and the cancellation

    newest_first = await listed(db)

    assert [(v.booking_id, v.status) for v in newest_first] == [("b-2", R), ("b-1", X)]
    assert newest_first[1].accepted_at == T0 + timedelta(seconds=1)  # the booking's own
    assert newest_first[1].updated_at == LATER
    assert filters.scans() == []


async def test_consumers_appending_to_one_list_at_once_give_each_booking_one_number(
    db: AsyncDatabase[Document], filters: Filters
) -> None:
    """Two consumers (two partitions) list the same principal's bookings concurrently, each
    in batches, while the hint lags: numbers stay dense and every booking is listed once."""
    first, second = MongoViewRepository(db), MongoViewRepository(db)
    odd, even = range(1, 40, 2), range(2, 41, 2)

    async def consume(repo: MongoViewRepository, numbers: range) -> None:
        batch = list(numbers)
        for start in range(0, len(batch), 4):
            await repo.list_bookings([of(n) for n in batch[start : start + 4]])

    await asyncio.gather(consume(first, odd), consume(second, even))
    await db[BOOKING_LISTS].update_one({"_id": list_head_id("alice")}, {"$set": {"newest": 3}})

    newest_first = await listed(db)

    assert sorted(v.booking_id for v in newest_first) == sorted(f"b-{n}" for n in range(1, 41))
    assert len(newest_first) == 40
    assert filters.scans() == []


async def test_a_crash_between_the_place_and_the_entry_is_finished_by_the_redelivery(
    db: AsyncDatabase[Document], filters: Filters
) -> None:
    """The place says 2, and 2 was taken by another booking before the entry was written."""
    await MongoViewRepository(db).list_bookings([of(1)])
    await db[LIST_PLACES].insert_one({"_id": "b-3", "principal": "alice", "number": 2})
    await db[BOOKING_LISTS].insert_one(list_entry_to_document(2, of(2)))

    await MongoViewRepository(db).list_bookings([of(3)])  # the redelivery

    assert [v.booking_id for v in await listed(db)] == ["b-3", "b-2", "b-1"]
    assert (await db[LIST_PLACES].find_one({"_id": "b-3"}) or {})["number"] == 3
    assert filters.scans() == []


async def test_principals_lists_do_not_meet(db: AsyncDatabase[Document]) -> None:
    repo = MongoViewRepository(db)
    await repo.list_bookings([of(1, principal="a"), of(2, principal="a#1"), of(3, principal="a")])

    assert [v.booking_id for v in await listed(db, "a")] == ["b-3", "b-1"]
    assert [v.booking_id for v in await listed(db, "a#1")] == ["b-2"]


async def test_a_restarted_consumer_appends_after_entries_it_does_not_remember(
    db: AsyncDatabase[Document], filters: Filters
) -> None:
    await MongoViewRepository(db).list_bookings([of(n) for n in range(1, 6)])

    await MongoViewRepository(db).list_bookings([of(6), of(7)])  # remembers nothing

    assert [v.booking_id for v in await listed(db)] == [f"b-{n}" for n in range(7, 0, -1)]
    assert (await db[LIST_PLACES].find_one({"_id": "b-7"}) or {})["number"] == 7
    assert filters.scans() == []
