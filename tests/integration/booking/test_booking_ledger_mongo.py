"""The Mongo ledger repository against the real MongoDB-wire server (FerretDB locally)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from booking.adapters import MongoLedgerRepository
from booking.domain import (
    AlreadyDecided,
    ConcurrencyConflict,
    EntryKind,
    LedgerEntry,
    decide,
    event_for,
)
from shared.events import CreateResource, RejectionReason, RequestBooking

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def ledger(mongo_db: AsyncDatabase[dict[str, object]]) -> MongoLedgerRepository:
    repository = MongoLedgerRepository(mongo_db)
    await repository.ensure_indexes()
    await repository.ensure_indexes()  # idempotent: every process start runs it
    return repository


def created(resource_id: object = None, capacity: int = 5) -> LedgerEntry:
    command = CreateResource(
        command_id=uuid4(),
        principal="admin",
        accepted_at=WHEN,
        resource_id=resource_id or uuid4(),
        name="Hall A",
        capacity=capacity,
    )
    entry = decide(None, command, WHEN).entry
    assert entry is not None
    return entry


def booked(latest: LedgerEntry, quantity: int = 1) -> LedgerEntry:
    command = RequestBooking(
        command_id=uuid4(),
        principal="alice",
        accepted_at=WHEN,
        booking_id=uuid4(),
        resource_id=latest.resource_id,
        quantity=quantity,
    )
    entry = decide(latest, command, WHEN).entry
    assert entry is not None
    return entry


async def test_an_appended_entry_reads_back_equal_and_so_does_its_event(
    ledger: MongoLedgerRepository,
) -> None:
    first = created()
    await ledger.append(first)
    rejected = booked(first, quantity=9)
    await ledger.append(rejected)

    assert await ledger.find_by_op_key(first.op_key) == first
    stored = await ledger.find_by_op_key(rejected.op_key)
    assert stored == rejected
    assert stored.reason is RejectionReason.SOLD_OUT
    assert event_for(stored) == event_for(rejected)


async def test_latest_is_the_highest_seq_of_that_resource_only(
    ledger: MongoLedgerRepository,
) -> None:
    assert await ledger.latest(uuid4()) is None
    entry = created()
    other = created()
    await ledger.append(entry)
    await ledger.append(other)
    for _ in range(3):
        entry = booked(entry)
        await ledger.append(entry)

    latest = await ledger.latest(entry.resource_id)
    assert latest is not None
    assert (latest.seq, latest.reserved, latest.kind) == (4, 3, EntryKind.CONFIRMED)
    assert (await ledger.latest(other.resource_id)) == other


async def test_a_second_writer_of_the_same_seq_gets_a_concurrency_conflict(
    ledger: MongoLedgerRepository,
) -> None:
    first = created()
    await ledger.append(first)
    winner, loser = booked(first), booked(first)
    await ledger.append(winner)

    with pytest.raises(ConcurrencyConflict):
        await ledger.append(loser)

    assert await ledger.find_by_op_key(loser.op_key) is None
    assert await ledger.latest(first.resource_id) == winner


async def test_an_operation_is_recorded_once_even_at_another_seq(
    ledger: MongoLedgerRepository,
) -> None:
    first = created()
    await ledger.append(first)
    decision = booked(first)
    await ledger.append(decision)
    # A zombie worker that decided the same booking against a newer state.
    zombie = replace(decision, seq=decision.seq + 1, recorded_at=datetime.now(UTC))

    with pytest.raises(AlreadyDecided) as raised:
        await ledger.append(zombie)

    assert raised.value.existing == decision
    assert await ledger.latest(first.resource_id) == decision
