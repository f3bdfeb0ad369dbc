"""Hand-written fakes of the booking adapters, and command builders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from prometheus_client import CollectorRegistry

from booking.domain import AlreadyDecided, ConcurrencyConflict, LedgerEntry
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler
from shared.events import CancelBooking, CreateResource, Event, RequestBooking
from shared.messaging import RetryPolicy
from tests.support.clock import FakeClock

ACCEPTED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ticking_clock() -> FakeClock:
    """Ticks one millisecond per reading, so recorded_at values differ and are predictable."""
    return FakeClock(ACCEPTED + timedelta(seconds=1), tick=0.001)


@dataclass
class FakeLedger:
    """An in-memory ledger with the unique keys of the real collection: (resource, seq) as
    the primary key, and op_key.

    Every method yields to the event loop first, so concurrent handlers interleave between
    reading the head and appending, the way they do against a real database. It counts its
    look-ups: ``gets`` are primary-key point look-ups, ``op_key_lookups`` are reads of an
    operation's pointer (also by primary key, but the hot path has no need of them).
    """

    entries: list[LedgerEntry] = field(default_factory=list)
    conflicts: int = 0
    batch_appends: int = 0
    refusals: int = 0
    """Ordered inserts stopped by a unique key (the rest of that batch goes one by one)."""
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

    async def find(self, op_key: str, resource_id: UUID, *, head: int) -> LedgerEntry | None:
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
        self._store(entry)

    async def append_many(self, entries: Sequence[LedgerEntry]) -> int:
        """One ordered insert: stops at the first entry a unique key refuses."""
        await asyncio.sleep(0)
        self.batch_appends += 1
        for stored, entry in enumerate(entries):
            if (entry.resource_id, entry.seq) in self._by_key or entry.op_key in self._by_op:
                if (entry.resource_id, entry.seq) in self._by_key:
                    self.conflicts += 1
                self.refusals += 1
                return stored
            self._store(entry)
        return len(entries)

    def _store(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)
        self._by_key[entry.resource_id, entry.seq] = entry
        self._by_op[entry.op_key] = entry


@dataclass
class FakePublisher:
    published: list[Event] = field(default_factory=list)
    failures: int = 0
    """Fail this many publishes first (Kafka unreachable right after the append)."""
    acks_held: asyncio.Event | None = None
    """When set, every ack waits for this event (Kafka slow to acknowledge)."""

    async def publish(self, event: Event) -> None:
        await asyncio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("kafka is down")
        self.published.append(event)

    async def send(self, event: Event) -> Awaitable[None]:
        """Taken in call order; the returned ack fails like publish while Kafka is down."""
        await asyncio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            return self._failed()
        self.published.append(event)
        if self.acks_held is not None:
            return asyncio.ensure_future(self.acks_held.wait())
        return asyncio.sleep(0)

    @staticmethod
    async def _failed() -> None:
        raise ConnectionError("kafka is down")


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


NO_WAIT = RetryPolicy(attempts=50, base_delay=0.0, max_delay=0.0)


def handler_for(
    ledger: FakeLedger,
    publisher: FakePublisher,
    metrics: BookingMetrics | None = None,
    *,
    heads_cached: int = 100,
) -> CommandHandler:
    """The real decide loop on the fakes, with a ticking clock and no back-off waits."""
    return CommandHandler(
        ledger,
        publisher,
        metrics or BookingMetrics(CollectorRegistry()),
        clock=ticking_clock(),
        backoff=NO_WAIT,
        publish_backoff=NO_WAIT,
        heads_cached=heads_cached,
    )
