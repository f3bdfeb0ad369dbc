"""Decisions on the resource ledger: pure functions, no I/O."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4, uuid5

import pytest

from booking.domain import (
    EVENT_NAMESPACE,
    EntryKind,
    LedgerEntry,
    ResourceState,
    decide,
    event_for,
    replay,
)
from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    Command,
    RejectionReason,
    ResourceCreated,
)
from tests.unit.booking.fakes import ACCEPTED, cancel, create, request

NOW = ACCEPTED + timedelta(seconds=2)


def state_entry(resource_id: UUID, *, capacity: int | None, reserved: int, seq: int) -> LedgerEntry:
    """A newest ledger entry that leaves the resource at (capacity, reserved)."""
    return LedgerEntry(
        resource_id=resource_id,
        seq=seq,
        op_key=f"decide:{uuid4()}",
        kind=EntryKind.CONFIRMED if capacity is not None else EntryKind.REJECTED,
        command_id=uuid4(),
        principal="someone",
        accepted_at=ACCEPTED,
        recorded_at=ACCEPTED,
        capacity=capacity,
        reserved=reserved,
        booking_id=uuid4(),
        quantity=1,
    )


@pytest.mark.parametrize(
    ("capacity", "reserved", "quantity", "kind", "reason", "reserved_after"),
    [
        pytest.param(10, 0, 3, EntryKind.CONFIRMED, None, 3, id="room-to-spare"),
        pytest.param(10, 8, 2, EntryKind.CONFIRMED, None, 10, id="exact-fill"),
        pytest.param(10, 9, 2, EntryKind.REJECTED, RejectionReason.SOLD_OUT, 9, id="one-too-many"),
        pytest.param(1, 1, 1, EntryKind.REJECTED, RejectionReason.SOLD_OUT, 1, id="full"),
        pytest.param(
            None, 0, 1, EntryKind.REJECTED, RejectionReason.UNKNOWN_RESOURCE, 0, id="not-created"
        ),
    ],
)
def test_a_booking_is_confirmed_only_while_it_fits_the_capacity(
    capacity: int | None,
    reserved: int,
    quantity: int,
    kind: EntryKind,
    reason: RejectionReason | None,
    reserved_after: int,
) -> None:
    rid = uuid4()
    latest = state_entry(rid, capacity=capacity, reserved=reserved, seq=7)
    command = request(rid, quantity)

    decision = decide(latest, command, NOW)

    assert decision.entry is not None
    assert (decision.entry.kind, decision.entry.reason) == (kind, reason)
    assert decision.entry.seq == 8
    assert decision.entry.reserved == reserved_after
    assert decision.entry.capacity == capacity
    assert decision.entry.op_key == f"decide:{command.booking_id}"
    event = decision.event
    if kind is EntryKind.CONFIRMED:
        assert isinstance(event, BookingConfirmed)
        assert (event.available, event.version) == ((capacity or 0) - reserved_after, 8)
    else:
        assert isinstance(event, BookingRejected)
        assert event.reason == reason
    assert event.booking_id == command.booking_id
    assert event.event_id == uuid5(EVENT_NAMESPACE, f"decide:{command.booking_id}")
    assert (event.command_id, event.accepted_at, event.occurred_at) == (
        command.command_id,
        ACCEPTED,
        NOW,
    )


def test_a_booking_for_a_resource_without_any_entry_is_rejected_as_unknown() -> None:
    command = request(uuid4())
    decision = decide(None, command, NOW)
    assert decision.entry is not None
    assert decision.entry.seq == 1
    assert isinstance(decision.event, BookingRejected)
    assert decision.event.reason is RejectionReason.UNKNOWN_RESOURCE


def test_creating_a_resource_starts_its_ledger_with_every_seat_available() -> None:
    rid = uuid4()
    decision = decide(None, create(rid, 40), NOW)
    assert decision.entry is not None
    assert (decision.entry.kind, decision.entry.seq, decision.entry.op_key) == (
        EntryKind.CREATED,
        1,
        f"create:{rid}",
    )
    assert isinstance(decision.event, ResourceCreated)
    assert (decision.event.capacity, decision.event.available, decision.event.version) == (
        40,
        40,
        1,
    )


def test_a_resource_created_after_an_unknown_resource_rejection_continues_its_ledger() -> None:
    rid = uuid4()
    rejected = decide(None, request(rid), NOW).entry
    decision = decide(rejected, create(rid, 5), NOW)
    assert decision.entry is not None
    assert decision.entry.seq == 2
    assert ResourceState.of(decision.entry) == ResourceState(capacity=5, reserved=0, seq=2)


def test_creating_an_existing_resource_records_nothing() -> None:
    rid = uuid4()
    latest = state_entry(rid, capacity=5, reserved=2, seq=3)
    decision = decide(latest, create(rid, 5), NOW)
    assert (decision.entry, decision.event, decision.note) == (None, None, "already_created")


def test_cancelling_a_confirmed_booking_returns_its_seats() -> None:
    rid = uuid4()
    command = request(rid, 3)
    booking = decide(state_entry(rid, capacity=10, reserved=0, seq=1), command, NOW).entry
    latest = state_entry(rid, capacity=10, reserved=7, seq=9)

    decision = decide(latest, cancel(command), NOW, booking=booking)

    assert decision.entry is not None
    assert (decision.entry.kind, decision.entry.seq, decision.entry.reserved) == (
        EntryKind.CANCELLED,
        10,
        4,
    )
    assert isinstance(decision.event, BookingCancelled)
    assert (decision.event.quantity, decision.event.available, decision.event.version) == (
        3,
        6,
        10,
    )
    assert decision.event.event_id == uuid5(EVENT_NAMESPACE, f"cancel:{command.booking_id}")


@pytest.mark.parametrize(
    ("situation", "note"),
    [
        ("other-principal", "other_principal"),
        ("rejected", "booking_rejected"),
        ("never-decided", "unknown_booking"),
        ("other-resource", "unknown_booking"),
    ],
)
def test_a_cancel_that_would_free_no_seat_of_ones_own_records_nothing(
    situation: str, note: str
) -> None:
    rid = uuid4()
    command = request(rid, 3)
    taken = 9 if situation == "rejected" else 0
    booking = decide(state_entry(rid, capacity=10, reserved=taken, seq=1), command, NOW).entry
    latest = state_entry(rid, capacity=10, reserved=3, seq=2)
    cancel_command = cancel(
        command, principal="mallory" if situation == "other-principal" else None
    )
    if situation == "never-decided":
        booking = None
    if situation == "other-resource":
        cancel_command = cancel_command.model_copy(update={"resource_id": uuid4()})

    decision = decide(latest, cancel_command, NOW, booking=booking)

    assert (decision.entry, decision.event, decision.note) == (None, None, note)


def test_deciding_the_same_command_twice_gives_the_same_event() -> None:
    rid = uuid4()
    latest = state_entry(rid, capacity=10, reserved=4, seq=4)
    command = request(rid, 2)
    first, second = decide(latest, command, NOW), decide(latest, command, NOW)
    assert first.event is not None
    assert second.event is not None
    assert first.event.event_id == second.event.event_id
    assert first.event == second.event


@pytest.mark.parametrize("kind", ["created", "confirmed", "rejected", "cancelled"])
def test_an_entry_rebuilds_exactly_the_event_first_published_for_it(kind: str) -> None:
    rid = uuid4()
    booking = request(rid, 2)
    latest = state_entry(rid, capacity=10, reserved=2, seq=3)
    command: Command = {
        "created": create(rid, 10),
        "confirmed": booking,
        "rejected": booking,
        "cancelled": cancel(booking),
    }[kind]
    decision = decide(
        None if kind in ("created", "rejected") else latest,
        command,
        NOW,
        booking=decide(latest, booking, NOW).entry,
    )
    assert decision.entry is not None
    assert decision.entry.kind.value == kind
    assert event_for(decision.entry) == decision.event
    assert replay(decision.entry, command).event == decision.event


def test_a_redelivered_cancel_is_announced_again_but_a_second_cancel_is_not() -> None:
    rid = uuid4()
    command = request(rid, 2)
    latest = state_entry(rid, capacity=10, reserved=2, seq=3)
    booking = decide(latest, command, NOW).entry
    first_cancel = cancel(command)
    cancelled = decide(latest, first_cancel, NOW, booking=booking)
    assert cancelled.entry is not None

    assert replay(cancelled.entry, first_cancel).event == cancelled.event
    again = replay(cancelled.entry, cancel(command))
    assert (again.event, again.note) == (None, "already_cancelled")
    by_other = replay(cancelled.entry, cancel(command, principal="mallory"))
    assert by_other.event is None


def test_entry_times_keep_the_millisecond_precision_the_ledger_can_store() -> None:
    precise = NOW.replace(microsecond=123456)
    command = create(uuid4(), 3).model_copy(update={"accepted_at": precise})
    entry = decide(None, command, precise).entry
    assert entry is not None
    assert entry.accepted_at == entry.recorded_at == precise.replace(microsecond=123000)
