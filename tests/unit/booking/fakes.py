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
    """An in-memory ledger that enforces both unique indexes of the real collection.

    Every method yields to the event loop first, so concurrent handlers interleave between
    reading the newest entry and appending, the way they do against a real database.
    """

    entries: list[LedgerEntry] = field(default_factory=list)
    conflicts: int = 0

    async def latest(self, resource_id: UUID) -> LedgerEntry | None:
        await asyncio.sleep(0)
        mine = [e for e in self.entries if e.resource_id == resource_id]
        return max(mine, key=lambda e: e.seq, default=None)

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None:
        await asyncio.sleep(0)
        return next((e for e in self.entries if e.op_key == op_key), None)

    async def append(self, entry: LedgerEntry) -> None:
        await asyncio.sleep(0)
        # Check and insert without yielding in between: that is what a unique index gives.
        for e in self.entries:
            if e.op_key == entry.op_key:
                raise AlreadyDecided(e)
        if any(e.resource_id == entry.resource_id and e.seq == entry.seq for e in self.entries):
            self.conflicts += 1
            raise ConcurrencyConflict(str(entry.resource_id), entry.seq)
        self.entries.append(entry)


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
