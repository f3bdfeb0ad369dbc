"""The gateway's group-committed inserts against a real MongoDB-wire server (no fakes):
concurrent inserts share one insert command, and each caller still gets its own outcome."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from pymongo import AsyncMongoClient, monitoring

from gateway.adapters import GroupCommit, MongoAcceptedStore, MongoIdempotencyStore
from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
    DependencyUnavailableError,
    IdempotencyRecord,
)
from shared.mongo import Document

pytestmark = pytest.mark.integration

# Long enough that a gather's inserts all join the first batch even on a busy machine.
GROUP = GroupCommit(max_docs=256, delay_seconds=0.05)


class Inserts(monitoring.CommandListener):
    """Counts the insert commands this test's client sends, with their documents."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.sizes.append(len(event.command["documents"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@pytest.fixture
def inserts() -> Inserts:
    return Inserts()


@pytest.fixture
async def db(mongo: Any, unique_id: str, inserts: Inserts) -> AsyncIterator[Any]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo.uri, tz_aware=True, uuidRepresentation="standard", event_listeners=[inserts]
    )
    name = unique_id.replace("-", "_")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


def reservation(key_id: str) -> IdempotencyRecord:
    now = datetime.now(UTC).replace(microsecond=0)
    return IdempotencyRecord(
        key_id=key_id,
        principal="alice",
        operation="request_booking",
        request_hash="h",
        entity_id=uuid4(),
        command_id=uuid4(),
        accepted_at=now,
    )


def booking_record(entity_id: Any = None) -> AcceptedRecord:
    return AcceptedRecord(
        id=entity_id or uuid4(),
        kind=AcceptedKind.BOOKING,
        principal="alice",
        resource_id=uuid4(),
        command_id=uuid4(),
        accepted_at=datetime.now(UTC).replace(microsecond=0),
        quantity=1,
    )


async def test_concurrent_reservations_are_one_insert_and_a_duplicate_reaches_only_its_caller(
    db: Any, inserts: Inserts
) -> None:
    store = MongoIdempotencyStore(db, GROUP)
    first, again = reservation("same-key"), reservation("same-key")
    others = [reservation(f"key-{i}") for i in range(20)]

    results = await asyncio.gather(*(store.reserve(r) for r in [first, *others, again]))
    await store.close()

    assert inserts.sizes == [22]
    assert results[:-1] == [None] * 21  # stored, each as its own caller expects
    existing = results[-1]
    assert existing is not None
    assert existing.entity_id == first.entity_id  # the duplicate sees the stored record
    assert await db["idempotency"].count_documents({}) == 21


async def test_concurrent_accepted_records_are_one_insert_and_a_repeat_keeps_the_first(
    db: Any, inserts: Inserts
) -> None:
    store = MongoAcceptedStore(db, GROUP)
    records = [booking_record() for _ in range(10)]
    repeat = booking_record(records[0].id)  # a retried publish of the same booking

    await asyncio.gather(*(store.record(r) for r in [*records, repeat]))
    await store.close()

    assert inserts.sizes == [11]
    stored = await store.get(records[0].id, AcceptedKind.BOOKING)
    assert stored is not None
    assert stored.command_id == records[0].command_id
    assert await db["accepted"].count_documents({}) == 10


async def test_closing_a_store_writes_the_inserts_still_waiting(db: Any) -> None:
    store = MongoAcceptedStore(db, GroupCommit(delay_seconds=60))
    record = booking_record()
    waiting = asyncio.create_task(store.record(record))
    await asyncio.sleep(0.01)

    await store.close()
    await waiting

    assert await store.get(record.id, AcceptedKind.BOOKING) is not None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_an_unreachable_server_fails_every_waiting_insert_as_unavailable() -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{closed_port()}/", serverSelectionTimeoutMS=500
    )
    store = MongoAcceptedStore(client["nowhere"], GROUP)
    try:
        outcomes = await asyncio.gather(
            *(store.record(booking_record()) for _ in range(5)), return_exceptions=True
        )
    finally:
        await store.close()
        await client.close()

    assert all(isinstance(o, DependencyUnavailableError) for o in outcomes), outcomes
