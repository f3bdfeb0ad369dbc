"""The MongoDB-wire server the fixtures provide is real: PyMongo's AsyncMongoClient
round-trips documents, a unique index rejects duplicates, lookups by _id use its index, and
an update of many statements does not hold the database's connections."""

from __future__ import annotations

import asyncio
import json

import pytest
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.integration


async def test_each_test_starts_with_an_empty_database_of_its_own(mongo_db):
    assert mongo_db.name.startswith("t_")
    assert await mongo_db.list_collection_names() == []


async def test_async_client_round_trips_inserted_updated_and_deleted_documents(mongo_db):
    resources = mongo_db["resources"]
    await resources.insert_many(
        [
            {"_id": "room-1", "name": "Room 1", "capacity": 4, "tags": ["quiet"]},
            {"_id": "room-2", "name": "Room 2", "capacity": 8, "tags": []},
            {"_id": "desk-1", "name": "Desk 1", "capacity": 1, "meta": {"floor": 3}},
        ]
    )

    big = await resources.find({"capacity": {"$gte": 4}}).sort("capacity", -1).to_list()
    assert [doc["_id"] for doc in big] == ["room-2", "room-1"]
    assert big[1]["tags"] == ["quiet"]

    result = await resources.update_one({"_id": "desk-1"}, {"$set": {"meta.floor": 4}})
    assert result.modified_count == 1
    desk = await resources.find_one({"_id": "desk-1"})
    assert desk is not None
    assert desk["meta"] == {"floor": 4}

    await resources.delete_one({"_id": "room-1"})
    assert await resources.count_documents({}) == 2


async def test_unique_index_rejects_a_second_entry_with_the_same_key(mongo_db):
    ledger = mongo_db["ledger"]
    await ledger.create_index([("resource_id", ASCENDING), ("seq", ASCENDING)], unique=True)
    await ledger.insert_one({"resource_id": "room-1", "seq": 1, "booking": "b-1"})

    with pytest.raises(DuplicateKeyError):
        await ledger.insert_one({"resource_id": "room-1", "seq": 1, "booking": "b-2"})

    await ledger.insert_one({"resource_id": "room-1", "seq": 2, "booking": "b-2"})
    entries = await ledger.find({}, {"_id": 0}).sort("seq", ASCENDING).to_list()
    assert entries == [
        {"resource_id": "room-1", "seq": 1, "booking": "b-1"},
        {"resource_id": "room-1", "seq": 2, "booking": "b-2"},
    ]


def _uses_an_index(plan: object) -> bool:
    """MongoDB names an _id lookup IDHACK / EXPRESS / IXSCAN; SQLite (FerretDB) says
    "SEARCH <table> USING INDEX" where a table scan says "SCAN <table>"."""
    text = json.dumps(plan, default=str)
    return any(marker in text for marker in ("USING INDEX", "IXSCAN", "IDHACK", "EXPRESS"))


@pytest.mark.parametrize(
    "guard", [{}, {"status": {"$nin": ["cancelled"]}}], ids=["plain", "with-a-guard"]
)
async def test_a_lookup_by_id_uses_the_id_index(mongo_db, guard):
    # Every view read, every pending-booking poll and every guarded view update is one of
    # these; a table scan would make each slower with every document ever stored.
    await mongo_db["bookings"].insert_many(
        [{"_id": f"b-{i}", "status": "confirmed"} for i in range(50)]
    )
    explained = await mongo_db.command(
        "explain", {"find": "bookings", "filter": {"_id": "b-7", **guard}}
    )
    assert _uses_an_index(explained["queryPlanner"]), explained["queryPlanner"]


async def test_a_guard_beside_the_id_still_decides_the_match(mongo_db):
    bookings = mongo_db["bookings"]
    await bookings.insert_one({"_id": "b-1", "status": "cancelled"})
    not_cancelled = {"_id": "b-1", "status": {"$nin": ["cancelled"]}}

    assert await bookings.find_one(not_cancelled) is None
    assert await bookings.find_one({"_id": "b-1", "status": "cancelled"}) is not None
    assert (await bookings.update_one(not_cancelled, {"$set": {"status": "x"}})).matched_count == 0
    with pytest.raises(DuplicateKeyError):  # the guarded upsert the views rely on
        await bookings.update_one(not_cancelled, {"$set": {"status": "x"}}, upsert=True)
    assert await bookings.find_one({"_id": "b-1"}) == {"_id": "b-1", "status": "cancelled"}


async def test_an_update_of_many_matching_statements_returns_and_leaves_the_database_usable(
    mongo_db,
):
    # The consumer applies a batch as one `update` command of guarded statements. FerretDB
    # kept each matched statement's query open until the command ended, and each statement's
    # write needs a connection of its own: past ~100 matches (the pool of one database) the
    # command waited for good, and every other read and write of that database behind it.
    hints = mongo_db["hints"]
    await hints.insert_many([{"_id": f"h{i}", "n": 0} for i in range(150)])
    statements = [
        {"q": {"_id": f"h{i}", "n": {"$lt": 1}}, "u": {"$set": {"n": 1}}} for i in range(150)
    ]
    async with asyncio.timeout(60):  # a hung command fails the test, not the suite
        result = await mongo_db.command("update", "hints", updates=statements, ordered=True)
        assert (result["n"], result["nModified"]) == (150, 150)
        assert await hints.count_documents({"n": 1}) == 150
