"""shared.retention's schedule: where the server has no TTL index, sweeps come one interval
apart, the first one interval after start (the sweeps themselves: tests/integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pymongo.errors import OperationFailure

from shared.retention import Retained, bounded

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
