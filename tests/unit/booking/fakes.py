"""Hand-written fakes of the booking adapters, and command builders."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from booking.domain import AlreadyDecided, ConcurrencyConflict, LedgerEntry
from shared.events import CancelBooking, CreateResource, Event, RequestBooking

ACCEPTED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    """Ticks one millisecond per reading, so recorded_at values differ and are predictable."""

    def __init__(self) -> None:
        self.now = ACCEPTED + timedelta(seconds=1)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@dataclass
class FakeLedger:
    """An in-memory ledger with the unique keys of the real collection: (resource, seq) as
    the primary key, and op_key.

    Every method yields to the event loop first, so concurrent handlers interleave between
    reading the head and appending, the way they do against a real database. It counts its
    look-ups: ``gets`` are primary-key point look-ups (cheap on any server), ``op_key_lookups``
    may scan the whole collection on FerretDB (the hot path must not make them).
    """

    entries: list[LedgerEntry] = field(default_factory=list)
    conflicts: int = 0
    gets: int = 0
    op_key_lookups: int = 0
    _by_key: dict[tuple[UUID, int], LedgerEntry] = field(default_factory=dict, repr=False)
    _by_op: dict[str, LedgerEntry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            self._by_key[entry.resource_id, entry.seq] = entry
            self._by_op[entry.op_key] = entry

    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        await asyncio.sleep(0)
        self.gets += 1
        return self._by_key.get((resource_id, seq))

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None:
        await asyncio.sleep(0)
        self.op_key_lookups += 1
        return self._by_op.get(op_key)

    async def append(self, entry: LedgerEntry) -> None:
        await asyncio.sleep(0)
        # Check and insert without yielding in between: that is what a unique index gives.
        # When both keys clash, answer like MongoLedgerRepository: the seq's holder decides.
        holder = self._by_key.get((entry.resource_id, entry.seq))
        if holder is not None and holder.op_key == entry.op_key:
            raise AlreadyDecided(holder)
        if holder is not None:
            self.conflicts += 1
            raise ConcurrencyConflict(str(entry.resource_id), entry.seq, current=holder)
        if entry.op_key in self._by_op:
            raise AlreadyDecided(self._by_op[entry.op_key])
        self.entries.append(entry)
        self._by_key[entry.resource_id, entry.seq] = entry
        self._by_op[entry.op_key] = entry


@dataclass
class FakePublisher:
    published: list[Event] = field(default_factory=list)
    failures: int = 0
    """Fail this many publishes first (Kafka unreachable right after the append)."""

    async def publish(self, event: Event) -> None:
        await asyncio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("kafka is down")
        self.published.append(event)


def create(resource_id: UUID, capacity: int, *, principal: str = "admin") -> CreateResource:
    return CreateResource(
        command_id=uuid4(),
        principal=principal,
        accepted_at=ACCEPTED,
        resource_id=resource_id,
        name="Hall A",
        capacity=capacity,
    )


def request(
    resource_id: UUID,
    quantity: int = 1,
    *,
    principal: str = "alice",
    booking_id: UUID | None = None,
) -> RequestBooking:
    return RequestBooking(
        command_id=uuid4(),
        principal=principal,
        accepted_at=ACCEPTED,
        booking_id=booking_id or uuid4(),
        resource_id=resource_id,
        quantity=quantity,
    )


def cancel(booking: RequestBooking, *, principal: str | None = None) -> CancelBooking:
    return CancelBooking(
        command_id=uuid4(),
        principal=principal or booking.principal,
        accepted_at=ACCEPTED,
        booking_id=booking.booking_id,
        resource_id=booking.resource_id,
    )
