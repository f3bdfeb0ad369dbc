"""The decide loop against in-memory fakes that enforce the ledger's unique indexes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from uuid import UUID, uuid4

import pytest
from prometheus_client import CollectorRegistry

from booking.domain import (
    ConcurrencyConflict,
    ContentionError,
    EntryKind,
    LedgerEntry,
    OverRelease,
    decide,
)
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler, Outcome
from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    Event,
    Message,
    RejectionReason,
    RequestBooking,
    ResourceCreated,
)
from tests.messages import deliveries
from tests.unit.booking.fakes import (
    ACCEPTED,
    NO_WAIT,
    FakeLedger,
    FakePublisher,
    cancel,
    create,
    handler_for,
    request,
)


def count(metrics: BookingMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("bookify_bookings_total", {"outcome": outcome})
    assert value is not None
    return value


def confirmed_seats(ledger: FakeLedger, resource_id: UUID) -> int:
    entries = [e for e in ledger.entries if e.resource_id == resource_id]
    held = sum(e.quantity for e in entries if e.kind is EntryKind.CONFIRMED)
    released = sum(e.quantity for e in entries if e.kind is EntryKind.CANCELLED)
    return held - released


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


async def test_a_created_resource_takes_bookings_until_it_is_full(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    handle = handler_for(ledger, publisher, metrics).handle
    rid = uuid4()

    assert await handle(create(rid, 3)) is Outcome.DECIDED
    for quantity in (2, 1, 1):
        assert await handle(request(rid, quantity)) is Outcome.DECIDED

    created, *bookings = publisher.published
    assert isinstance(created, ResourceCreated)
    assert [e.ce_type for e in bookings] == [
        BookingConfirmed.ce_type,
        BookingConfirmed.ce_type,
        BookingRejected.ce_type,
    ]
    assert [getattr(e, "available", None) for e in bookings] == [1, 0, None]
    assert [e.seq for e in ledger.entries] == [1, 2, 3, 4]
    assert (count(metrics, "confirmed"), count(metrics, "rejected")) == (2, 1)


async def test_a_booking_for_an_unknown_resource_is_rejected_and_recorded(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    await handler_for(ledger, publisher).handle(request(uuid4()))
    [event] = publisher.published
    assert isinstance(event, BookingRejected)
    assert event.reason is RejectionReason.UNKNOWN_RESOURCE
    assert [e.kind for e in ledger.entries] == [EntryKind.REJECTED]


async def test_a_redelivered_command_republishes_the_same_event_without_deciding_again(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    handle = handler_for(ledger, publisher, metrics).handle
    rid = uuid4()
    await handle(create(rid, 1))
    booking = request(rid)

    assert await handle(booking) is Outcome.DECIDED
    assert await handle(booking) is Outcome.REPLAYED

    first, second = publisher.published[1:]
    assert first == second  # same event id, same payload: downstream deduplicates
    assert len(ledger.entries) == 2
    assert count(metrics, "confirmed") == 1


async def test_a_publish_failing_after_the_append_is_retried_until_kafka_takes_it(
    ledger: FakeLedger,
) -> None:
    rid = uuid4()
    await handler_for(ledger, FakePublisher()).handle(create(rid, 5))
    flaky = FakePublisher(failures=3)  # a broker error, not an outage the policy waits out
    metrics = BookingMetrics(CollectorRegistry())

    # Never raised, so never dead-lettered: the seats are taken, the read model must hear.
    assert await handler_for(ledger, flaky, metrics).handle(request(rid, 2)) is Outcome.DECIDED

    [event] = flaky.published
    assert isinstance(event, BookingConfirmed)
    assert event.available == 3
    assert count(metrics, "confirmed") == 1
    failures = {"service": "booking", "error_type": "ConnectionError"}
    assert metrics.registry.get_sample_value("bookify_handler_failures_total", failures) == 3


async def test_a_crash_between_append_and_publish_is_healed_by_redelivery(
    ledger: FakeLedger,
) -> None:
    rid = uuid4()
    await handler_for(ledger, FakePublisher()).handle(create(rid, 5))
    stuck = StuckPublisher()
    booking = request(rid, 2)
    crashed = asyncio.create_task(handler_for(ledger, stuck).handle(booking))
    await stuck.reached.wait()  # the entry is stored and its publish is under way
    crashed.cancel()  # the process dies here
    with pytest.raises(asyncio.CancelledError):
        await crashed
    assert len(ledger.entries) == 2

    publisher = FakePublisher()
    metrics = BookingMetrics(CollectorRegistry())
    assert await handler_for(ledger, publisher, metrics).handle(booking) is Outcome.REPLAYED

    [event] = publisher.published
    assert isinstance(event, BookingConfirmed)
    assert event.available == 3
    assert len(ledger.entries) == 2
    assert count(metrics, "confirmed") == 0  # counted by the process that decided it


class StuckPublisher(FakePublisher):
    """A publish that never returns (the process will die during it)."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()

    async def publish(self, event: Event) -> None:
        self.reached.set()
        await asyncio.Event().wait()


async def test_a_request_that_kept_failing_is_settled_as_rejected_without_taking_a_seat(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handler = handler_for(ledger, publisher)
    rid = uuid4()
    await handler.handle(create(rid, 5))
    booking = request(rid, 2)

    await handler.settle(booking, RuntimeError("kept failing"))

    stored = ledger.entries[-1]
    assert (stored.kind, stored.reason) == (EntryKind.REJECTED, RejectionReason.PROCESSING_FAILED)
    assert (stored.reserved, stored.seq) == (0, 2)
    rejected = publisher.published[-1]
    assert isinstance(rejected, BookingRejected)
    assert rejected.reason is RejectionReason.PROCESSING_FAILED
    # Replayed from the DLQ, or settled again: announced again, never decided twice.
    assert await handler.handle(booking) is Outcome.REPLAYED
    await handler.settle(booking, RuntimeError("again"))
    assert len(ledger.entries) == 2
    assert publisher.published[-1] == publisher.published[-2] == rejected
    # The seats are all still there for the next buyer.
    assert await handler.handle(request(rid, 5)) is Outcome.DECIDED
    assert ledger.entries[-1].kind is EntryKind.CONFIRMED


async def test_a_request_decided_before_it_failed_keeps_its_decision_when_settled(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handler = handler_for(ledger, publisher)
    rid = uuid4()
    await handler.handle(create(rid, 5))
    booking = request(rid, 2)
    await handler.handle(booking)

    await handler.settle(booking, RuntimeError("failed after its decision was stored"))

    assert [e.kind for e in ledger.entries] == [EntryKind.CREATED, EntryKind.CONFIRMED]
    assert isinstance(publisher.published[-1], BookingConfirmed)


async def test_a_failed_creation_or_cancel_is_left_in_the_dlq_and_records_nothing(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handler = handler_for(ledger, publisher)
    rid = uuid4()
    await handler.settle(create(rid, 5), RuntimeError("boom"))
    assert (ledger.entries, publisher.published) == ([], [])

    await handler.handle(create(rid, 5))
    booking = request(rid, 2)
    await handler.handle(booking)
    await handler.settle(cancel(booking), RuntimeError("boom"))
    assert ledger.entries[-1].kind is EntryKind.CONFIRMED  # still held: the cancel may be replayed
    assert len(publisher.published) == 2


async def test_creating_a_resource_twice_republishes_the_first_creation(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handle = handler_for(ledger, publisher).handle
    rid = uuid4()
    await handle(create(rid, 5))
    assert await handle(create(rid, 99)) is Outcome.REPLAYED
    first, second = publisher.published
    assert first == second
    assert isinstance(second, ResourceCreated)
    assert second.capacity == 5


async def test_cancelling_returns_the_seats_to_the_next_booking(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    handle = handler_for(ledger, publisher, metrics).handle
    rid = uuid4()
    await handle(create(rid, 2))
    booking = request(rid, 2)
    await handle(booking)
    assert isinstance(await last_event(handle, request(rid), publisher), BookingRejected)

    cancelled = await last_event(handle, cancel(booking), publisher)
    assert isinstance(cancelled, BookingCancelled)
    assert (cancelled.quantity, cancelled.available) == (2, 2)

    assert isinstance(await last_event(handle, request(rid, 2), publisher), BookingConfirmed)
    assert count(metrics, "cancelled") == 1


async def last_event(
    handle: Callable[[Message], Awaitable[Outcome]], command: Message, publisher: FakePublisher
) -> Event:
    before = len(publisher.published)
    await handle(command)
    assert len(publisher.published) == before + 1
    return publisher.published[-1]


@pytest.mark.parametrize("who", ["another principal", "the owner, again"])
async def test_a_cancel_that_frees_no_seat_publishes_nothing(
    ledger: FakeLedger, publisher: FakePublisher, who: str
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    handle = handler_for(ledger, publisher, metrics).handle
    rid = uuid4()
    await handle(create(rid, 4))
    booking = request(rid, 3, principal="alice")
    await handle(booking)
    if who == "the owner, again":
        await handle(cancel(booking))
    published, entries = len(publisher.published), len(ledger.entries)

    intruder = "mallory" if who == "another principal" else None
    assert await handle(cancel(booking, principal=intruder)) is Outcome.IGNORED

    assert (len(publisher.published), len(ledger.entries)) == (published, entries)
    assert confirmed_seats(ledger, rid) == (3 if who == "another principal" else 0)


async def test_cancelling_a_rejected_or_unknown_booking_publishes_nothing(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handle = handler_for(ledger, publisher).handle
    rid = uuid4()
    await handle(create(rid, 1))
    rejected = request(rid, 2)
    await handle(rejected)
    published = len(publisher.published)
    ledger.op_key_lookups = 0

    assert await handle(cancel(rejected)) is Outcome.IGNORED
    assert await handle(cancel(request(rid))) is Outcome.IGNORED
    assert len(publisher.published) == published
    # Never the cancel's own op_key: such a cancel can have recorded nothing, so it is not
    # looked up (that look-up was the cancel cliff: a scan of the ledger on FerretDB). The
    # rejected booking's decision this worker remembers; the unknown one's pointer is read.
    assert ledger.op_key_lookups == 1


async def test_a_worker_remembers_the_decisions_it_stored_and_a_cold_one_reads_them(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    rid = uuid4()
    warm = handler_for(ledger, publisher)
    bookings = [request(rid, 1) for _ in range(3)]
    await warm.many(deliveries(create(rid, 5), *bookings))
    ledger.op_key_lookups = 0

    await warm.many(deliveries(cancel(bookings[0])))
    assert ledger.op_key_lookups == 0  # issue 19: two round trips per cancel, in series
    await handler_for(ledger, publisher).many(deliveries(cancel(bookings[1])))
    assert ledger.op_key_lookups == 1  # a cold worker (after a rebalance) reads the pointer
    assert confirmed_seats(ledger, rid) == 1


async def test_two_handlers_racing_on_one_resource_never_overbook(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    # Two workers share the ledger, as during a rebalance or with a zombie worker; each one
    # processes its records one after the other, like a subscriber does.
    metrics = BookingMetrics(CollectorRegistry())
    workers = [handler_for(ledger, publisher, metrics) for _ in range(2)]
    rid = uuid4()
    await workers[0].handle(create(rid, 10))
    commands = [request(rid, 1, principal=f"user-{i}") for i in range(30)]

    async def work(handler: CommandHandler, mine: list[RequestBooking]) -> None:
        for command in mine:
            await handler.handle(command)

    await asyncio.gather(*(work(w, commands[i::2]) for i, w in enumerate(workers)))

    assert ledger.conflicts > 0, "the workers never raced; this test proves nothing"
    assert confirmed_seats(ledger, rid) == 10
    assert count(metrics, "confirmed") == 10
    assert count(metrics, "rejected") == 20
    seqs = [e.seq for e in ledger.entries if e.resource_id == rid]
    assert sorted(seqs) == list(range(1, 32))


async def test_two_handlers_on_the_same_command_decide_it_once(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    rid = uuid4()
    await handler_for(ledger, publisher).handle(create(rid, 10))
    booking = request(rid, 4)

    outcomes = await asyncio.gather(
        *(handler_for(ledger, publisher, metrics).handle(booking) for _ in range(3))
    )

    assert sorted(outcomes) == [Outcome.DECIDED, Outcome.REPLAYED, Outcome.REPLAYED]
    assert confirmed_seats(ledger, rid) == 4
    assert count(metrics, "confirmed") == 1
    events = publisher.published[1:]
    assert len(events) == 3
    assert len({e.event_id for e in events}) == 1


class AlwaysConflicting(FakeLedger):
    async def append(self, entry: LedgerEntry) -> None:
        raise ConcurrencyConflict(str(entry.resource_id), entry.seq)


async def test_a_handler_that_keeps_losing_the_race_gives_up_with_an_error(
    publisher: FakePublisher,
) -> None:
    handler = CommandHandler(
        AlwaysConflicting(),
        publisher,
        BookingMetrics(CollectorRegistry()),
        max_attempts=3,
        backoff=NO_WAIT,
    )
    with pytest.raises(ContentionError):
        await handler.handle(request(uuid4()))
    assert publisher.published == []


def history(resource_id: UUID, length: int, capacity: int = 100_000) -> list[LedgerEntry]:
    """A resource's first ``length`` ledger entries: its creation, then one-seat bookings."""
    entries: list[LedgerEntry] = []
    latest: LedgerEntry | None = None
    for i in range(length):
        command = create(resource_id, capacity) if i == 0 else request(resource_id)
        entry = decide(latest, command, ACCEPTED).entry
        assert entry is not None
        entries.append(entry)
        latest = entry
    return entries


async def test_a_worker_with_a_stale_head_loses_the_seq_race_and_decides_on_the_fresh_state(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    first, second = handler_for(ledger, publisher), handler_for(ledger, publisher)
    rid = uuid4()
    await first.handle(create(rid, 3))
    await first.handle(request(rid, 1))  # first now believes 2 seats are left...
    await second.handle(request(rid, 2))  # ...but the other worker takes them

    assert await first.handle(request(rid, 1)) is Outcome.DECIDED

    assert ledger.conflicts == 1  # the stale head's seq was taken
    rejected = publisher.published[-1]
    assert isinstance(rejected, BookingRejected)
    assert rejected.reason is RejectionReason.SOLD_OUT
    assert confirmed_seats(ledger, rid) == 3
    assert [e.seq for e in ledger.entries] == [1, 2, 3, 4]
    assert ledger.op_key_lookups == 0


@pytest.mark.parametrize("length", [0, 1, 2, 37, 1000])
async def test_a_cold_worker_finds_the_head_with_a_logarithmic_number_of_point_lookups(
    publisher: FakePublisher, length: int
) -> None:
    rid = uuid4()
    ledger = FakeLedger(entries=history(uuid4(), 50) + history(rid, length))
    handle = handler_for(ledger, publisher).handle

    assert await handle(request(rid)) is Outcome.DECIDED

    appended = ledger.entries[-1]
    assert (appended.resource_id, appended.seq) == (rid, length + 1)
    expected = EntryKind.CONFIRMED if length else EntryKind.REJECTED
    assert appended.kind is expected
    if length:
        assert appended.reserved == length  # the head's state, not an older one
    assert ledger.gets <= 2 * math.log2(length + 1) + 2
    assert (ledger.op_key_lookups, ledger.conflicts) == (0, 0)

    found = ledger.gets
    await handle(request(rid))
    assert ledger.gets == found  # the head is cached now


async def test_a_redelivered_command_is_caught_by_the_op_key_at_append_time(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    metrics = BookingMetrics(CollectorRegistry())
    worker = handler_for(ledger, publisher, metrics)
    rid = uuid4()
    await worker.handle(create(rid, 5))
    booking = request(rid, 2)
    await worker.handle(booking)
    await worker.handle(request(rid, 1))  # the booking is no longer the head

    assert await worker.handle(booking) is Outcome.REPLAYED  # same worker, head cached
    assert await handler_for(ledger, publisher).handle(booking) is Outcome.REPLAYED  # cold

    first = publisher.published[1]
    assert publisher.published[-2:] == [first, first]  # same event id, same payload
    assert isinstance(first, BookingConfirmed)
    assert (first.booking_id, first.available) == (booking.booking_id, 3)
    assert len(ledger.entries) == 3
    assert ledger.op_key_lookups == 0  # no look-up before deciding, on any path here
    assert count(metrics, "confirmed") == 2


async def test_a_cancel_by_a_worker_whose_head_predates_the_booking_releases_its_seats(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    first, second = handler_for(ledger, publisher), handler_for(ledger, publisher)
    rid = uuid4()
    await first.handle(create(rid, 3))
    await second.handle(request(rid, 1))  # second's head: seq 2, 1 seat reserved
    booking = request(rid, 2)
    await first.handle(booking)  # seq 3, 3 reserved; second does not know

    assert await second.handle(cancel(booking)) is Outcome.DECIDED

    cancelled = publisher.published[-1]
    assert isinstance(cancelled, BookingCancelled)
    assert (cancelled.quantity, cancelled.available) == (2, 2)
    assert confirmed_seats(ledger, rid) == 1


async def test_a_redelivered_cancel_that_freed_every_seat_is_announced_again(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    handle = handler_for(ledger, publisher).handle
    rid = uuid4()
    await handle(create(rid, 2))
    booking = request(rid, 2)
    await handle(booking)
    cancellation = cancel(booking)
    await handle(cancellation)  # 0 seats reserved: releasing 2 again would go negative

    assert await handle(cancellation) is Outcome.REPLAYED
    assert await handler_for(ledger, publisher).handle(cancellation) is Outcome.REPLAYED

    first, *again = publisher.published[-3:]
    assert isinstance(first, BookingCancelled)
    assert again == [first, first]
    assert confirmed_seats(ledger, rid) == 0


async def test_a_ledger_reserving_fewer_seats_than_a_booking_holds_is_an_error(
    publisher: FakePublisher,
) -> None:
    rid = uuid4()
    created, booked = history(rid, 2, capacity=5)
    broken = replace(booked, seq=3, op_key="decide:bogus", reserved=0)
    booking = request(
        rid, booked.quantity, principal=booked.principal, booking_id=booked.booking_id
    )
    ledger = FakeLedger(entries=[created, booked, broken])

    with pytest.raises(OverRelease):
        await handler_for(ledger, publisher).handle(cancel(booking))
    assert publisher.published == []
    assert len(ledger.entries) == 3


async def test_a_worker_remembers_a_bounded_number_of_heads_and_finds_forgotten_ones_again(
    ledger: FakeLedger, publisher: FakePublisher
) -> None:
    worker = handler_for(ledger, publisher, heads_cached=2)
    rids = [uuid4() for _ in range(3)]
    for rid in rids:
        await worker.handle(create(rid, 1))
    before = ledger.gets

    assert await worker.handle(request(rids[0])) is Outcome.DECIDED  # forgotten: found again

    assert ledger.gets > before
    confirmed = publisher.published[-1]
    assert isinstance(confirmed, BookingConfirmed)
    assert (confirmed.version, confirmed.available) == (2, 0)
