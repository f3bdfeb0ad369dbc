"""GroupInserter: concurrent inserts coalesced into unordered insert_many calls, each caller
getting its own document's outcome (gateway.adapters.group_commit)."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from gateway.adapters import GroupInserter
from gateway.ports import DependencyUnavailableError

from .fakes import FakeCollection

LONG = 60.0  # a delay no test waits out: a flush that happens came from something else


def doc(id_: Any) -> dict[str, Any]:
    return {"_id": id_, "v": 1}


async def insert_all(inserter: GroupInserter, *ids: Any) -> list[BaseException | None]:
    """Insert concurrently; each caller's outcome, in order (None: stored)."""
    return await asyncio.gather(*(inserter.insert(doc(i)) for i in ids), return_exceptions=True)


async def settle() -> None:
    for _ in range(5):  # let started tasks reach their awaits
        await asyncio.sleep(0)


async def test_concurrent_inserts_go_out_as_one_insert_many() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.01)

    outcomes = await insert_all(inserter, "a", "b", "c", "d", "e")

    assert outcomes == [None] * 5
    assert [[d["_id"] for d in call] for call in collection.calls] == [["a", "b", "c", "d", "e"]]


async def test_a_full_batch_is_flushed_without_waiting_for_the_delay() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=3, max_delay=LONG)

    async with asyncio.timeout(2):
        outcomes = await insert_all(inserter, "a", "b", "c")

    assert outcomes == [None] * 3
    assert len(collection.calls) == 1


async def test_a_lone_insert_is_flushed_once_the_delay_is_over() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.05)

    task = asyncio.create_task(inserter.insert(doc("a")))
    await settle()
    waited_for_company = collection.calls == []
    async with asyncio.timeout(2):
        await task

    assert waited_for_company
    assert collection.calls == [[doc("a")]]


async def test_more_than_a_batch_is_split_into_batches_of_at_most_max_batch() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=2, max_delay=0.01)

    outcomes = await insert_all(inserter, 1, 2, 3, 4, 5)

    assert outcomes == [None] * 5
    assert [len(call) for call in collection.calls] == [2, 2, 1]


async def test_what_arrives_during_a_flush_goes_out_together_in_the_next_one() -> None:
    collection = FakeCollection(hold=asyncio.Event())
    inserter = GroupInserter(collection, max_batch=100, max_delay=0)
    first = asyncio.create_task(inserter.insert(doc("first")))
    await settle()  # "first" is being written

    rest = asyncio.gather(*(inserter.insert(doc(i)) for i in range(4)))
    await settle()
    in_flight = len(collection.calls)
    assert collection.hold is not None
    collection.hold.set()
    await asyncio.gather(first, rest)

    assert in_flight == 1  # one flush at a time
    assert [len(call) for call in collection.calls] == [1, 4]


async def test_a_duplicate_key_fails_only_the_caller_whose_document_it_is() -> None:
    collection = FakeCollection(docs={"b": doc("b")})
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.01)

    a, b, c = await insert_all(inserter, "a", "b", "c")

    assert (a, c) == (None, None)
    assert isinstance(b, DuplicateKeyError)
    assert b.code == 11000
    assert set(collection.docs) == {"a", "b", "c"}
    assert len(collection.calls) == 1


async def test_the_same_id_twice_in_one_batch_stores_the_first_and_fails_the_second() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.01)

    first, second = await insert_all(inserter, "k", "k")

    assert first is None
    assert isinstance(second, DuplicateKeyError)


async def test_another_write_error_is_a_dependency_error_for_that_caller_only() -> None:
    collection = FakeCollection(invalid={"bad"})
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.01)

    good, bad = await insert_all(inserter, "good", "bad")

    assert good is None
    assert isinstance(bad, DependencyUnavailableError)
    assert bad.dependency == "mongodb"


async def test_a_write_concern_error_fails_every_caller_of_the_batch() -> None:
    collection = FakeCollection(write_concern_error=True)
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.01)

    outcomes = await insert_all(inserter, "a", "b")

    assert all(isinstance(o, DependencyUnavailableError) for o in outcomes)


async def test_an_outage_fails_every_waiting_caller_with_a_dependency_error() -> None:
    collection = FakeCollection(outage=True, hold=asyncio.Event())
    inserter = GroupInserter(collection, max_batch=100, max_delay=0)
    in_flight = asyncio.gather(*(inserter.insert(doc(i)) for i in range(3)), return_exceptions=True)
    await settle()
    # These wait behind the failing flush; they would only wait out the same timeout.
    behind = asyncio.gather(*(inserter.insert(doc(i)) for i in range(3, 5)), return_exceptions=True)
    await settle()
    assert collection.hold is not None
    collection.hold.set()

    outcomes = [*await in_flight, *await behind]

    assert len(outcomes) == 5
    assert all(isinstance(o, DependencyUnavailableError) for o in outcomes)
    assert {o.dependency for o in outcomes if isinstance(o, DependencyUnavailableError)} == {
        "mongodb"
    }
    assert len(collection.calls) == 1


async def test_the_buffer_works_again_after_an_outage() -> None:
    collection = FakeCollection(outage=True)
    inserter = GroupInserter(collection, max_batch=100, max_delay=0)
    with pytest.raises(DependencyUnavailableError):
        await inserter.insert(doc("a"))

    collection.outage = False
    await inserter.insert(doc("a"))

    assert set(collection.docs) == {"a"}


async def test_an_unexpected_error_reaches_its_batch_and_the_next_batch_is_written() -> None:
    collection = FakeCollection(bug=TypeError("cannot encode object"), hold=asyncio.Event())
    inserter = GroupInserter(collection, max_batch=100, max_delay=0)
    broken = asyncio.gather(inserter.insert(doc("a")), return_exceptions=True)
    await settle()
    after = asyncio.gather(inserter.insert(doc("b")), return_exceptions=True)
    await settle()
    assert collection.hold is not None
    collection.hold.set()

    assert [type(o) for o in await broken] == [TypeError]
    assert await after == [None]
    assert set(collection.docs) == {"b"}


async def test_close_writes_what_is_waiting_and_then_refuses_inserts() -> None:
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=100, max_delay=LONG)
    waiting = asyncio.gather(*(inserter.insert(doc(i)) for i in range(3)))
    await settle()

    async with asyncio.timeout(2):
        await inserter.close()

    assert await waiting == [None] * 3
    assert set(collection.docs) == {0, 1, 2}
    with pytest.raises(DependencyUnavailableError):
        await inserter.insert(doc("late"))


async def test_a_cancelled_caller_still_has_its_document_written_and_others_are_unaffected() -> (
    None
):
    collection = FakeCollection()
    inserter = GroupInserter(collection, max_batch=100, max_delay=0.05)
    gone = asyncio.create_task(inserter.insert(doc("gone")))
    stays = asyncio.create_task(inserter.insert(doc("stays")))
    await settle()

    gone.cancel()
    await stays

    assert gone.cancelled()
    assert set(collection.docs) == {"gone", "stays"}


REQUEST: ContextVar[str] = ContextVar("request", default="-")


@dataclass
class TracingCollection(FakeCollection):
    """Notes the request (as a trace context would) each insert_many runs in."""

    seen: list[str] = field(default_factory=list)

    async def insert_many(self, documents: list[Any], *, ordered: bool) -> object:
        self.seen.append(REQUEST.get())
        return await super().insert_many(documents, ordered=ordered)


async def test_each_batch_is_written_in_the_context_of_its_first_caller() -> None:
    collection = TracingCollection(hold=asyncio.Event())
    inserter = GroupInserter(collection, max_batch=100, max_delay=0)

    async def request(name: str) -> None:
        REQUEST.set(name)
        await inserter.insert(doc(name))

    first = asyncio.create_task(request("r1"))  # starts the flusher, in r1's context
    await settle()
    later = asyncio.gather(request("r2"), request("r3"))
    await settle()
    assert collection.hold is not None
    collection.hold.set()
    await asyncio.gather(first, later)

    assert collection.seen == ["r1", "r2"]


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupInserter(FakeCollection(), max_batch=0)
