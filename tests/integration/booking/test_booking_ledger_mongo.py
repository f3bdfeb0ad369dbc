"""The Mongo ledger repository against the real MongoDB-wire server (FerretDB locally)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from booking.adapters import MongoLedgerRepository, entry_id
from booking.domain import (
    AlreadyDecided,
    ConcurrencyConflict,
    EntryKind,
    LedgerEntry,
    decide,
    event_for,
)
from booking.service_layer import find_head
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

    assert await ledger.get(first.resource_id, 1) == first
    assert await found(ledger, first) == first
    stored = await ledger.get(first.resource_id, 2)
    assert stored == rejected
    assert stored.reason is RejectionReason.SOLD_OUT
    assert event_for(stored) == event_for(rejected)
    assert await found(ledger, rejected) == rejected


async def test_an_entry_is_keyed_by_its_resource_and_zero_padded_seq(
    ledger: MongoLedgerRepository, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    first = created()
    await ledger.append(first)
    await ledger.append(booked(first))

    docs = await mongo_db["ledger"].find({}, {"_id": 1, "seq": 1}).sort("seq").to_list()
    rid = first.resource_id
    assert [d["_id"] for d in docs] == [f"{rid}:000000000001", f"{rid}:000000000002"]
    assert entry_id(rid, 2) == docs[1]["_id"]


async def test_get_reads_one_seq_of_one_resource_only(ledger: MongoLedgerRepository) -> None:
    assert await ledger.get(uuid4(), 1) is None
    entry, other = created(), created()
    await ledger.append(entry)
    await ledger.append(other)
    for _ in range(3):
        entry = booked(entry)
        await ledger.append(entry)

    fourth = await ledger.get(entry.resource_id, 4)
    assert fourth is not None
    assert (fourth.seq, fourth.reserved, fourth.kind) == (4, 3, EntryKind.CONFIRMED)
    assert await ledger.get(entry.resource_id, 5) is None
    assert await ledger.get(other.resource_id, 1) == other
    assert await ledger.get(other.resource_id, 2) is None


async def test_a_second_writer_of_the_same_seq_gets_a_concurrency_conflict(
    ledger: MongoLedgerRepository,
) -> None:
    first = created()
    await ledger.append(first)
    winner, loser = booked(first), booked(first)
    await ledger.append(winner)

    with pytest.raises(ConcurrencyConflict) as raised:
        await ledger.append(loser)

    assert raised.value.current == winner  # the newer head comes with the refusal
    assert await found(ledger, loser) is None
    assert await ledger.get(first.resource_id, 2) == winner


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
    assert await ledger.get(first.resource_id, zombie.seq) is None


async def test_an_operation_redecided_at_its_own_seq_is_already_decided(
    ledger: MongoLedgerRepository,
) -> None:
    first = created()
    await ledger.append(first)
    decision = booked(first)
    await ledger.append(decision)

    with pytest.raises(AlreadyDecided) as raised:
        await ledger.append(replace(decision, recorded_at=datetime.now(UTC)))

    assert raised.value.existing == decision


async def test_an_operation_is_found_without_its_pointer_and_the_pointer_is_restored(
    ledger: MongoLedgerRepository, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    first = created()
    batch = [first, *chain(first, 4)]
    await ledger.append_many(batch)
    decision = batch[1]
    pointer = {"_id": decision.op_key, "entry_id": entry_id(decision.resource_id, 2)}
    assert await mongo_db["ledger_ops"].find_one({"_id": decision.op_key}) == pointer
    # A crash between a batch's insert and its pointers'.
    await mongo_db["ledger_ops"].delete_many({"_id": {"$in": [e.op_key for e in batch]}})

    assert await found(ledger, decision, head=batch[-1].seq) == decision

    # Every pointer the walk down from the head passed is back, not only the one asked for.
    for entry in batch[1:]:
        restored = await mongo_db["ledger_ops"].find_one({"_id": entry.op_key})
        assert restored == {"_id": entry.op_key, "entry_id": entry_id(entry.resource_id, entry.seq)}
    assert await ledger.find("decide:never", first.resource_id, head=5) is None


async def test_an_operation_older_than_the_tail_without_its_pointer_is_not_found_by_a_read(
    mongo_db: AsyncDatabase[dict[str, object]],
) -> None:
    ledger = MongoLedgerRepository(mongo_db, tail=3)
    await ledger.ensure_indexes()
    first = created()
    batch = [first, *chain(first, 4)]
    await ledger.append_many(batch)
    await mongo_db["ledger_ops"].delete_one({"_id": first.op_key})

    assert await found(ledger, first, head=5) is None  # seqs 5, 4, 3 only: no scan
    # Appending it again proves it recorded (the op_key index), so the ledger looks harder.
    with pytest.raises(AlreadyDecided) as raised:
        await ledger.append(replace(first, seq=6))
    assert raised.value.existing == first


async def test_a_ledger_written_before_pointers_were_kept_gets_them_once_at_start(
    mongo_db: AsyncDatabase[dict[str, object]],
) -> None:
    ledger = MongoLedgerRepository(mongo_db, tail=1)
    first = created()
    batch = [first, *chain(first, 4)]
    await ledger.append_many(batch)
    # An older version's pointers expired after retention_seconds.
    await mongo_db["ledger_ops"].delete_many({})

    await ledger.ensure_indexes()

    for entry in batch:
        assert await found(ledger, entry, head=1) == entry  # by pointer: tail 1 reaches seq 1
    await mongo_db["ledger_ops"].delete_many({"_id": first.op_key})
    await ledger.ensure_indexes()  # once per store: the marker says it was done
    assert await mongo_db["ledger_ops"].find_one({"_id": first.op_key}) is None


async def found(
    ledger: MongoLedgerRepository, entry: LedgerEntry, *, head: int | None = None
) -> LedgerEntry | None:
    """``entry``'s operation looked up on its resource, from ``head`` (default: its own seq)."""
    return await ledger.find(
        entry.op_key, entry.resource_id, head=entry.seq if head is None else head
    )


class CountingLedger:
    """Counts the primary-key look-ups a head search makes against the real server."""

    def __init__(self, ledger: MongoLedgerRepository) -> None:
        self.ledger = ledger
        self.gets = 0

    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        self.gets += 1
        return await self.ledger.get(resource_id, seq)

    async def find(self, op_key: str, resource_id: UUID, *, head: int) -> LedgerEntry | None:
        raise AssertionError("a head search never looks an op_key up")

    async def append(self, entry: LedgerEntry) -> None:
        raise AssertionError("a head search never appends")


async def test_the_head_is_found_with_a_logarithmic_number_of_point_lookups(
    ledger: MongoLedgerRepository,
) -> None:
    entry = created(capacity=1000)
    await ledger.append(created())
    entries = [entry]
    for _ in range(299):
        entry = booked(entry)
        entries.append(entry)
    for i in range(0, len(entries), 50):
        await asyncio.gather(*(ledger.append(e) for e in entries[i : i + 50]))
    counting = CountingLedger(ledger)

    assert await find_head(counting, entry.resource_id) == entry
    assert counting.gets <= 2 * math.log2(300 + 1) + 2

    counting.gets = 0
    assert await find_head(counting, entry.resource_id, known=entries[250]) == entry
    assert counting.gets <= 2 * math.log2(50 + 1) + 2
    assert await find_head(counting, uuid4()) is None


async def test_the_unique_indexes_exist(
    ledger: MongoLedgerRepository, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    indexes = await mongo_db["ledger"].index_information()
    assert indexes["op_key"].get("unique") is True
    assert indexes["resource_seq"].get("unique") is True


def chain(head: LedgerEntry, count: int) -> list[LedgerEntry]:
    """``count`` bookings decided one after another in memory, as a batch decides them."""
    entries = []
    for _ in range(count):
        head = booked(head)
        entries.append(head)
    return entries


async def test_a_batch_is_appended_in_one_insert_and_every_entry_is_findable(
    ledger: MongoLedgerRepository,
) -> None:
    first = created(capacity=10)
    batch = [first, *chain(first, 4)]

    assert await ledger.append_many(batch) == 5

    for entry in batch:
        assert await ledger.get(entry.resource_id, entry.seq) == entry
        assert await found(ledger, entry) == entry
    assert await find_head(ledger, first.resource_id) == batch[-1]


async def test_a_batch_stops_at_the_first_seq_another_writer_took(
    ledger: MongoLedgerRepository,
) -> None:
    first = created(capacity=10)
    await ledger.append(first)
    ours = chain(first, 4)  # seqs 2 to 5
    theirs = booked(ours[0])  # another worker's booking got seq 3 first
    await ledger.append(theirs)

    stored = await ledger.append_many(ours)

    assert stored == 1  # seq 2; then seq 3 is refused, and nothing after it is written
    assert await ledger.get(first.resource_id, 2) == ours[0]
    assert await ledger.get(first.resource_id, 3) == theirs
    assert await ledger.get(first.resource_id, 4) is None
    assert await found(ledger, ours[2]) is None


async def test_a_batch_stops_at_an_operation_already_recorded(
    ledger: MongoLedgerRepository,
) -> None:
    first = created(capacity=10)
    decided = booked(first)
    await ledger.append_many([first, decided])
    # The same booking decided again at a fresher seq (a redelivery after the head moved).
    again = replace(decided, seq=decided.seq + 1)

    assert await ledger.append_many([again, booked(again)]) == 0
    assert await find_head(ledger, first.resource_id) == decided


@pytest.mark.parametrize("refused_at", [0, 50, 150])
async def test_a_batch_larger_than_the_servers_chunk_still_stops_at_the_refusal(
    ledger: MongoLedgerRepository, refused_at: int
) -> None:
    # FerretDB v1 goes on past a refusal with its next chunk of 100 documents: a redelivered
    # batch of 250 whose first entry was decided already stored entries 100 to 249 anyway,
    # on a head that never was (found by tests/chaos/test_kafka_frozen.py).
    first = created(capacity=1_000)
    await ledger.append(first)
    ours = chain(first, 250)
    theirs = booked(ours[refused_at - 1] if refused_at else first)
    await ledger.append(theirs)

    assert await ledger.append_many(ours) == refused_at

    taken = ours[refused_at].seq
    assert await ledger.get(first.resource_id, taken) == theirs
    for entry in ours[refused_at + 1 :]:
        assert await ledger.get(entry.resource_id, entry.seq) is None
    assert await find_head(ledger, first.resource_id) == theirs
