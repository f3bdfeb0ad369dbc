"""The per-resource ledger and the decisions taken on it.

Every decision about a resource is one entry of an append-only ledger, numbered by ``seq``.
An entry carries the resource's state *after* it (``capacity``, ``reserved``), so the newest
entry is the state, and it carries everything its event needs, so the event can be rebuilt
byte for byte from the entry alone (that is how an already-decided command is re-published).

The functions here only decide: given the newest entry (or none) and a command, which entry to
append and which event to publish. Appending (and losing the race for a ``seq``) is the
service layer's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid5

from booking.domain.errors import OverRelease
from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    CancelBooking,
    Command,
    CreateResource,
    Event,
    RejectionReason,
    RequestBooking,
    ResourceCreated,
)

# Event ids are uuid5(EVENT_NAMESPACE, op_key): a re-published decision has the same id, so
# downstream deduplication by event id holds under at-least-once delivery. Never change it.
EVENT_NAMESPACE = UUID("04ff3dd6-bc2c-4900-b4dd-0336a604c116")


class EntryKind(StrEnum):
    CREATED = "created"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


def create_key(resource_id: UUID) -> str:
    return f"create:{resource_id}"


def decide_key(booking_id: UUID) -> str:
    return f"decide:{booking_id}"


def cancel_key(booking_id: UUID) -> str:
    return f"cancel:{booking_id}"


def op_key_for(command: Command) -> str:
    """The operation a command performs: at most one ledger entry exists per op_key."""
    if isinstance(command, CreateResource):
        return create_key(command.resource_id)
    if isinstance(command, RequestBooking):
        return decide_key(command.booking_id)
    if isinstance(command, CancelBooking):
        return cancel_key(command.booking_id)
    raise TypeError(f"booking does not handle {type(command).__name__}")


def event_id_for(op_key: str) -> UUID:
    return uuid5(EVENT_NAMESPACE, op_key)


def storable(moment: datetime) -> datetime:
    """``moment`` at the millisecond precision of a BSON date.

    An entry holds only what the ledger can store, so the event rebuilt from a stored entry
    equals, field for field, the one first published from the fresh entry.
    """
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class LedgerEntry:
    resource_id: UUID
    seq: int
    op_key: str
    kind: EntryKind
    command_id: UUID
    principal: str
    accepted_at: datetime
    recorded_at: datetime
    capacity: int | None
    """Capacity after this entry; None while the resource has not been created."""
    reserved: int
    """Seats held by confirmed, not cancelled bookings after this entry."""
    booking_id: UUID | None = None
    quantity: int = 0
    name: str | None = None
    reason: RejectionReason | None = None


@dataclass(frozen=True)
class ResourceState:
    capacity: int | None = None
    reserved: int = 0
    seq: int = 0

    @classmethod
    def of(cls, latest: LedgerEntry | None) -> ResourceState:
        if latest is None:
            return cls()
        return cls(capacity=latest.capacity, reserved=latest.reserved, seq=latest.seq)

    @property
    def exists(self) -> bool:
        return self.capacity is not None

    @property
    def available(self) -> int:
        return (self.capacity or 0) - self.reserved


@dataclass(frozen=True)
class Decision:
    """What to record and what to tell the world; ``entry`` None means record nothing."""

    entry: LedgerEntry | None
    event: Event | None
    note: str = ""
    """Why nothing is recorded (for the log)."""

    @classmethod
    def record(cls, entry: LedgerEntry) -> Decision:
        return cls(entry=entry, event=event_for(entry))

    @classmethod
    def ignore(cls, note: str) -> Decision:
        return cls(entry=None, event=None, note=note)


def create_resource(state: ResourceState, command: CreateResource, now: datetime) -> Decision:
    if state.exists:
        return Decision.ignore("already_created")
    return Decision.record(
        LedgerEntry(
            resource_id=command.resource_id,
            seq=state.seq + 1,
            op_key=create_key(command.resource_id),
            kind=EntryKind.CREATED,
            command_id=command.command_id,
            principal=command.principal,
            accepted_at=storable(command.accepted_at),
            recorded_at=storable(now),
            capacity=command.capacity,
            reserved=state.reserved,
            name=command.name,
        )
    )


def request_booking(
    state: ResourceState, command: RequestBooking, now: datetime, *, failed: bool = False
) -> Decision:
    """Confirm the seats if there are enough; ``failed``: reject, the command kept failing."""
    reason: RejectionReason | None = None
    reserved = state.reserved
    if failed:
        reason = RejectionReason.PROCESSING_FAILED
    elif not state.exists:
        reason = RejectionReason.UNKNOWN_RESOURCE
    elif command.quantity > state.available:
        reason = RejectionReason.SOLD_OUT
    else:
        reserved = state.reserved + command.quantity
    return Decision.record(
        LedgerEntry(
            resource_id=command.resource_id,
            seq=state.seq + 1,
            op_key=decide_key(command.booking_id),
            kind=EntryKind.CONFIRMED if reason is None else EntryKind.REJECTED,
            command_id=command.command_id,
            principal=command.principal,
            accepted_at=storable(command.accepted_at),
            recorded_at=storable(now),
            capacity=state.capacity,
            reserved=reserved,
            booking_id=command.booking_id,
            quantity=command.quantity,
            reason=reason,
        )
    )


def cancel_booking(
    state: ResourceState, booking: LedgerEntry | None, command: CancelBooking, now: datetime
) -> Decision:
    """Release the seats of ``booking`` (its decision entry, looked up by op_key).

    ``state`` must include ``booking``'s entry. Raises :class:`OverRelease` when it reserves
    fewer seats than the booking holds: its cancel is recorded already (or the ledger is broken).
    """
    if booking is None or booking.resource_id != command.resource_id:
        return Decision.ignore("unknown_booking")
    if booking.principal != command.principal:
        # Not a 404 here (the gateway answers that); never let one principal free another's seats.
        return Decision.ignore("other_principal")
    if booking.kind is not EntryKind.CONFIRMED:
        return Decision.ignore(f"booking_{booking.kind.value}")
    if state.reserved < booking.quantity:
        raise OverRelease(
            f"ledger of resource {command.resource_id} reserves {state.reserved} seats, "
            f"fewer than confirmed booking {booking.booking_id} holds ({booking.quantity})"
        )
    return Decision.record(
        LedgerEntry(
            resource_id=command.resource_id,
            seq=state.seq + 1,
            op_key=cancel_key(command.booking_id),
            kind=EntryKind.CANCELLED,
            command_id=command.command_id,
            principal=command.principal,
            accepted_at=storable(command.accepted_at),
            recorded_at=storable(now),
            capacity=state.capacity,
            reserved=state.reserved - booking.quantity,
            booking_id=command.booking_id,
            quantity=booking.quantity,
        )
    )


def decide(
    latest: LedgerEntry | None,
    command: Command,
    now: datetime,
    *,
    booking: LedgerEntry | None = None,
    failed: bool = False,
) -> Decision:
    """Decide ``command`` on the resource whose newest ledger entry is ``latest``.

    ``booking`` is the decision entry of the booking a :class:`CancelBooking` names.
    ``failed``: handling the command kept failing, decide the last resort instead. A request
    is rejected (``processing_failed``, no seat taken), so its client is not left waiting; a
    creation or a cancel records nothing (it stays in the DLQ for an operator to replay).
    """
    state = ResourceState.of(latest)
    if failed:
        if isinstance(command, RequestBooking):
            return request_booking(state, command, now, failed=True)
        return Decision.ignore("failed_left_in_dlq")
    if isinstance(command, CreateResource):
        return create_resource(state, command, now)
    if isinstance(command, RequestBooking):
        return request_booking(state, command, now)
    if isinstance(command, CancelBooking):
        return cancel_booking(state, booking, command, now)
    raise TypeError(f"booking does not handle {type(command).__name__}")


def replay(existing: LedgerEntry, command: Command) -> Decision:
    """The answer to a command whose operation already has its entry ``existing``.

    A redelivered command gets its event again (same event id, so downstream deduplicates).
    A *different* cancel of an already-cancelled booking gets nothing: a second request must
    not re-announce a cancellation, let alone one made by another principal.
    """
    if existing.kind is EntryKind.CANCELLED and existing.command_id != command.command_id:
        return Decision.ignore("already_cancelled")
    return Decision(entry=None, event=event_for(existing), note="already_decided")


def event_for(entry: LedgerEntry) -> Event:
    """The event announcing ``entry``: a pure function of it, so re-publishing is exact."""
    common = {
        "event_id": event_id_for(entry.op_key),
        "command_id": entry.command_id,
        "resource_id": entry.resource_id,
        "occurred_at": entry.recorded_at,
        "accepted_at": entry.accepted_at,
    }
    available = (entry.capacity or 0) - entry.reserved
    if entry.kind is EntryKind.REJECTED:
        reason = entry.reason or RejectionReason.UNKNOWN_RESOURCE
        detail = {
            RejectionReason.SOLD_OUT: f"{available} left, {entry.quantity} requested",
            RejectionReason.UNKNOWN_RESOURCE: "no such resource",
            RejectionReason.PROCESSING_FAILED: "could not be processed; no seat was taken",
        }[reason]
        return BookingRejected(
            **common,
            booking_id=_booking_id(entry),
            principal=entry.principal,
            quantity=entry.quantity,
            reason=reason,
            detail=detail,
        )
    if entry.kind is EntryKind.CREATED:
        return ResourceCreated(
            **common,
            name=entry.name or "",
            capacity=entry.capacity or 0,
            available=available,
            version=entry.seq,
        )
    event_type = BookingConfirmed if entry.kind is EntryKind.CONFIRMED else BookingCancelled
    return event_type(
        **common,
        booking_id=_booking_id(entry),
        principal=entry.principal,
        quantity=entry.quantity,
        available=available,
        version=entry.seq,
    )


def _booking_id(entry: LedgerEntry) -> UUID:
    if entry.booking_id is None:
        raise ValueError(f"{entry.kind.value} entry {entry.op_key} has no booking_id")
    return entry.booking_id
