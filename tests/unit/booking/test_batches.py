"""The batched decide loop: one append per batch, and every invariant of the one-by-one path."""

from __future__ import annotations

import asyncio
import random
from uuid import uuid4

import pytest

from booking.domain import EntryKind, LedgerEntry
from booking.service_layer import handlers
from booking.service_layer.handlers import Command
from shared.events import BookingCancelled, BookingConfirmed, BookingRejected, RequestBooking
from tests.messages import deliveries
from tests.unit.booking.fakes import FakeLedger, FakePublisher, cancel, create, handler_for, request


def seats(ledger: FakeLedger, resource_id: object) -> list[LedgerEntry]:
    return sorted((e for e in ledger.entries if e.resource_id == resource_id), key=lambda e: e.seq)


async def test_a_batch_on_one_resource_is_decided_in_order_with_one_append() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    bookings = [request(rid, 1) for _ in range(5)]

    await handler_for(ledger, publisher).many(deliveries(create(rid, 3), *bookings))

    assert ledger.batch_appends == 1
    assert [e.seq for e in seats(ledger, rid)] == [1, 2, 3, 4, 5, 6]
    kinds = [type(e) for e in publisher.published[1:]]
    assert kinds == [BookingConfirmed] * 3 + [BookingRejected] * 2
    assert [e.booking_id for e in publisher.published[1:]] == [b.booking_id for b in bookings]
    assert seats(ledger, rid)[-1].reserved == 3


async def test_a_redelivered_batch_replays_its_events_and_decides_nothing_twice() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    batch = deliveries(create(rid, 2), request(rid, 1), request(rid, 1), request(rid, 1))
    await handler_for(ledger, publisher).many(batch)
    first = list(publisher.published)

    # A new worker (empty head cache) gets the same batch again, as after a crash before
    # the offsets were committed.
    await handler_for(ledger, publisher).many(batch)

    assert len(ledger.entries) == 4
    assert publisher.published[4:] == first  # the same events, ids and all, in the same order


async def test_a_seq_taken_by_another_worker_mid_batch_is_decided_again_one_by_one() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    ours = handler_for(ledger, publisher)
    await ours.many(deliveries(create(rid, 3)))
    # A zombie appends a confirmation at seq 2 behind our back: our cached head is stale.
    zombie_booking = request(rid, 2)
    await handler_for(ledger, FakePublisher()).handle(zombie_booking)

    late = [request(rid, 1) for _ in range(3)]
    await ours.many(deliveries(*late))

    entries = seats(ledger, rid)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert ledger.conflicts >= 1
    confirmed = [e for e in entries if e.kind is EntryKind.CONFIRMED]
    assert sum(e.quantity for e in confirmed) == 3  # never more than the capacity
    assert [type(e) for e in publisher.published[1:]] == [
        BookingConfirmed,
        BookingRejected,
        BookingRejected,
    ]


async def test_a_cancel_in_the_middle_of_a_batch_runs_in_order_on_the_stored_decisions() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    first, second = request(rid, 1), request(rid, 1)

    await handler_for(ledger, publisher).many(
        deliveries(create(rid, 1), first, cancel(first), second)
    )

    assert [type(e).__name__ for e in publisher.published] == [
        "ResourceCreated",
        "BookingConfirmed",
        "BookingCancelled",
        "BookingConfirmed",  # the cancelled seat went to the next buyer
    ]
    assert isinstance(publisher.published[2], BookingCancelled)
    assert seats(ledger, rid)[-1].reserved == 1


async def test_cancels_of_every_kind_stay_in_the_batch_and_its_one_append() -> None:
    """Issue 19: each cancel cut its batch in two (a flush, its acks, then the cancel alone
    with its own append and ack), so a crowd's 8 % of cancels halved booking's rate."""
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    earlier = request(rid, 1)
    await handler_for(ledger, publisher).many(deliveries(create(rid, 3), earlier))
    appends_before = ledger.batch_appends
    kept, cancelled_pending, rejected = request(rid, 1), request(rid, 1), request(rid, 2)

    await handler_for(ledger, publisher).many(
        deliveries(
            kept,
            cancelled_pending,
            rejected,  # 2 seats asked, 1 left: rejected
            cancel(cancelled_pending),  # decided in this very batch
            cancel(earlier),  # decided in an earlier batch: found through its pointer
            cancel(rejected),  # nothing to free: ignored, the batch goes on
            cancel(kept, principal="mallory"),  # another's booking: ignored
            request(rid, 2),  # the two freed seats
        )
    )

    assert ledger.batch_appends == appends_before + 1
    assert [type(e).__name__ for e in publisher.published[2:]] == [
        "BookingConfirmed",
        "BookingConfirmed",
        "BookingRejected",
        "BookingCancelled",
        "BookingCancelled",
        "BookingConfirmed",
    ]
    assert [(e.seq, e.reserved) for e in seats(ledger, rid)][-6:] == [
        (3, 2),
        (4, 3),
        (5, 3),
        (6, 2),
        (7, 1),
        (8, 3),
    ]


async def test_an_operation_recorded_already_is_replayed_in_place_not_refused() -> None:
    """A second cancel of a booking (its view still read confirmed at the gateway) and a
    request published twice were refused by the ledger, and every command after them in the
    batch was then decided one at a time: the mix's p99 went from 0.4 to 1.5 s (issue 19)."""
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    worker = handler_for(ledger, publisher)
    first, second = request(rid, 1), request(rid, 1)
    await worker.many(deliveries(create(rid, 5), first, second, cancel(first)))
    appends, published = ledger.batch_appends, len(publisher.published)

    again = [cancel(first), request(rid, 1), first, cancel(second), cancel(second)]
    await worker.many(deliveries(*again))

    assert ledger.refusals == 0
    assert ledger.batch_appends == appends + 1
    assert [type(e).__name__ for e in publisher.published[published:]] == [
        "BookingConfirmed",  # the new request
        "BookingConfirmed",  # ``first`` again: its event replayed, same id
        "BookingCancelled",  # ``second``'s cancel; its second cancel is ignored
    ]
    assert publisher.published[published + 1].event_id == publisher.published[1].event_id


@pytest.mark.parametrize("seed", range(20))
async def test_a_batch_decides_as_one_command_at_a_time_would(seed: int) -> None:
    """Random crowds on two small resources (bookings, cancels of pending, confirmed and
    rejected bookings, by their owner or not, redeliveries): the batched path stores the
    same entries and publishes the same events as the one-by-one path."""
    rng = random.Random(seed)
    resources = [uuid4(), uuid4()]
    commands: list[Command] = [create(rid, rng.randint(1, 4)) for rid in resources]
    booked: list[RequestBooking] = []
    for _ in range(60):
        roll = rng.random()
        if booked and roll < 0.3:
            target = rng.choice(booked)
            commands.append(cancel(target, principal=rng.choice([None, None, "mallory"])))
        elif commands and roll < 0.35:
            commands.append(rng.choice(commands))  # a redelivery
        else:
            booked.append(request(rng.choice(resources), rng.randint(1, 2)))
            commands.append(booked[-1])

    one, batched = FakeLedger(), FakeLedger()
    one_published, batched_published = FakePublisher(), FakePublisher()
    alone = handler_for(one, one_published)
    for command in commands:
        await alone.handle(command)
    worker = handler_for(batched, batched_published)
    cut = rng.randint(1, len(commands) - 1)
    await worker.many(deliveries(*commands[:cut]))
    await worker.many(deliveries(*commands[cut:]))

    def stored(ledger: FakeLedger) -> list[tuple[object, ...]]:
        return sorted(
            (str(e.resource_id), e.seq, e.op_key, e.kind, e.reserved) for e in ledger.entries
        )

    assert stored(batched) == stored(one)
    assert [e.event_id for e in batched_published.published] == [
        e.event_id for e in one_published.published
    ]


async def test_a_publish_failing_after_the_append_fails_the_batch_and_a_redelivery_heals() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    batch = deliveries(create(rid, 5), request(rid, 1), request(rid, 2))
    publisher.failures = 1  # Kafka is gone right after the entries were stored

    with pytest.raises(ConnectionError):
        await handler_for(ledger, publisher).many(batch)
    assert len(ledger.entries) == 3  # stored, not announced: the offsets are not committed

    await handler_for(ledger, publisher).many(batch)  # the redelivery

    assert len(ledger.entries) == 3
    announced = {e.event_id for e in publisher.published}
    assert len(announced) == 3  # every stored decision is announced


async def test_the_same_booking_twice_in_one_batch_is_decided_once() -> None:
    ledger, publisher = FakeLedger(), FakePublisher()
    rid = uuid4()
    booking = request(rid, 1)
    again = booking.model_copy(update={"command_id": uuid4()})  # an idempotent takeover

    await handler_for(ledger, publisher).many(deliveries(create(rid, 5), booking, again))

    decisions = [e for e in ledger.entries if e.booking_id == booking.booking_id]
    assert len(decisions) == 1
    confirmations = [e for e in publisher.published if isinstance(e, BookingConfirmed)]
    assert {e.event_id for e in confirmations} == {confirmations[0].event_id}


class WarningsLog:
    """Stands in for a module's logger: keeps the warnings, and says when one came."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []
        self.warned = asyncio.Event()

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append((event, fields))
        self.warned.set()

    def debug(self, event: str, **fields: object) -> None: ...


async def test_a_batch_waiting_for_its_acks_says_so_until_they_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = WarningsLog()
    monkeypatch.setattr(handlers, "log", log)
    monkeypatch.setattr(handlers, "ACK_WAIT_WARNING_SECONDS", 0.01)
    released = asyncio.Event()
    ledger, publisher = FakeLedger(), FakePublisher(acks_held=released)
    rid = uuid4()

    batch = asyncio.create_task(
        handler_for(ledger, publisher).many(deliveries(create(rid, 2), request(rid, 1)))
    )
    await asyncio.wait_for(log.warned.wait(), timeout=5)
    assert not batch.done()  # so its offsets are not committed yet
    released.set()
    await asyncio.wait_for(batch, timeout=5)

    event, fields = log.warnings[0]
    assert event == "event_acks_waiting"
    assert (fields["missing"], fields["batch"]) == (2, 2)
