"""Bounded storage on the real MongoDB-wire server: TTL indexes where it has them, else sweeps."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.retention import Retained, bounded, expire_by_index, sweep

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
DAY = 86_400.0


async def seed(db: AsyncDatabase[dict[str, Any]], name: str) -> Retained:
    collection = db[name]
    await collection.insert_many(
        [{"_id": f"old-{i}", "at": NOW - timedelta(days=2, minutes=i)} for i in range(3)]
        + [{"_id": f"new-{i}", "at": NOW - timedelta(hours=1)} for i in range(2)]
        + [{"_id": "no-date"}]  # older documents without the field are left alone
    )
    return Retained(collection, "at", DAY)


async def ids(retained: Retained) -> set[str]:
    return {d["_id"] for d in await retained.collection.find({}, {"_id": 1}).to_list()}


async def test_a_sweep_deletes_only_what_is_older_than_the_retention(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    retained = await seed(mongo_db, "swept")

    assert await sweep(retained, NOW) == 3
    assert await ids(retained) == {"new-0", "new-1", "no-date"}
    assert await sweep(retained, NOW) == 0


async def test_retention_is_a_ttl_index_where_the_server_has_one_else_a_running_sweep(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    retained = await seed(mongo_db, "bounded")
    probe = await seed(mongo_db, "probe")

    if await expire_by_index(probe):  # MongoDB: the server expires them itself
        indexes = await probe.collection.index_information()
        assert indexes["expire_at"]["expireAfterSeconds"] == int(DAY)
        return
    # FerretDB v1: no TTL index, so the lifespan's sweep must do it, in the background.
    async with bounded([retained], interval=0.05, clock=lambda: NOW):
        deadline = time.monotonic() + 10
        while await ids(retained) != {"new-0", "new-1", "no-date"}:
            assert time.monotonic() < deadline, "the sweep never ran"
            await asyncio.sleep(0.05)


async def test_a_changed_retention_takes_effect_on_the_real_server(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    first = await seed(mongo_db, "retimed")
    shorter = Retained(first.collection, "at", 1_800.0)  # retention_seconds lowered

    if await expire_by_index(first):  # MongoDB: the TTL index is changed in place
        assert await expire_by_index(shorter)
        indexes = await first.collection.index_information()
        assert indexes["expire_at"]["expireAfterSeconds"] == 1_800
        return
    # FerretDB v1 has no TTL index to change (expireAfterSeconds "not implemented yet"), so
    # there the sweep is how retention applies, and it applies the new one.
    assert not await expire_by_index(shorter)
    assert await sweep(shorter, NOW) == 5
    assert await ids(first) == {"no-date"}
