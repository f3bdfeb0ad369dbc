"""shared.retention's schedule: where the server has no TTL index, sweeps come one interval
apart, the first one interval after start (the sweeps themselves: tests/integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pymongo.errors import OperationFailure

from shared.retention import Retained, bounded, expire_by_index

NOW = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)


@dataclass
class NoTtlCollection:
    """A collection on a server without TTL indexes (FerretDB v1), recording each call."""

    name: str = "accepted"
    calls: list[str] = field(default_factory=list)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    swept: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_index(self, *_: Any, **__: Any) -> str:
        self.calls.append("create_index")
        self.asked.set()
        raise OperationFailure("not implemented")

    async def delete_many(self, _: Any) -> Any:
        self.calls.append("delete_many")
        self.swept.set()
        return type("Deleted", (), {"deleted_count": 0})()


async def test_the_first_sweep_comes_one_interval_after_start() -> None:
    collection = NoTtlCollection()
    retained = Retained(cast(Any, collection), "accepted_at", 86_400.0)
    loop = asyncio.get_running_loop()

    async with bounded([retained], interval=0.3, clock=lambda: NOW):
        await asyncio.wait_for(collection.asked.wait(), 5)
        asked = loop.time()
        await asyncio.wait_for(collection.swept.wait(), 5)  # it does come
        swept = loop.time()

    assert collection.calls[:2] == ["create_index", "delete_many"]
    assert swept - asked >= 0.3 - 0.01  # not at start: an interval after the TTL question


@dataclass
class TtlDatabase:
    """The database side of a server with TTL indexes: ``collMod``, refused on request."""

    collection: TtlCollection
    refuses_collmod: bool = False

    async def command(self, name: str, target: str, *, index: dict[str, Any]) -> None:
        assert (name, target) == ("collMod", self.collection.name)
        self.collection.calls.append("collMod")
        if self.refuses_collmod:
            raise OperationFailure("collMod of an index is not supported", code=115)
        self.collection.indexes[index["name"]] = index["expireAfterSeconds"]


@dataclass
class TtlCollection:
    """A collection on a server with TTL indexes (MongoDB): an index of the same name with
    another expiry is refused as MongoDB refuses it (IndexOptionsConflict)."""

    name: str = "accepted"
    indexes: dict[str, int] = field(default_factory=dict)  # name -> expireAfterSeconds
    calls: list[str] = field(default_factory=list)
    database: TtlDatabase = field(init=False)

    def __post_init__(self) -> None:
        self.database = TtlDatabase(self)

    async def create_index(self, _: str, *, expireAfterSeconds: int, name: str) -> str:  # noqa: N803
        self.calls.append("create_index")
        if self.indexes.get(name, expireAfterSeconds) != expireAfterSeconds:
            raise OperationFailure("an index with different options exists", code=85)
        self.indexes[name] = expireAfterSeconds
        return name

    async def drop_index(self, name: str) -> None:
        self.calls.append("drop_index")
        del self.indexes[name]


async def test_a_changed_retention_changes_the_ttl_index_in_place() -> None:
    collection = TtlCollection(indexes={"expire_accepted_at": 86_400})
    retained = Retained(cast(Any, collection), "accepted_at", 3_600.0)

    assert await expire_by_index(retained)  # a TTL index still: no fallback to sweeps

    assert collection.indexes == {"expire_accepted_at": 3_600}
    assert collection.calls == ["create_index", "collMod"]


async def test_a_server_that_refuses_collmod_gets_the_index_made_again() -> None:
    collection = TtlCollection(indexes={"expire_accepted_at": 86_400})
    collection.database.refuses_collmod = True
    retained = Retained(cast(Any, collection), "accepted_at", 3_600.0)

    assert await expire_by_index(retained)

    assert collection.indexes == {"expire_accepted_at": 3_600}
    assert collection.calls == ["create_index", "collMod", "drop_index", "create_index"]


async def test_the_same_retention_leaves_the_ttl_index_alone() -> None:
    collection = TtlCollection(indexes={"expire_accepted_at": 86_400})
    assert await expire_by_index(Retained(cast(Any, collection), "accepted_at", 86_400.0))
    assert collection.calls == ["create_index"]
