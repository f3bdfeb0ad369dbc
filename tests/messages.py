"""One valid example of every message type, for tests that need real payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    CancelBooking,
    CreateResource,
    Message,
    RejectionReason,
    RequestBooking,
    ResourceCreated,
    encode,
)
from shared.messaging import Delivery, Record

WHEN = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def sample_messages(resource_id: UUID | None = None) -> list[Message]:
    rid = resource_id or uuid4()
    booking = uuid4()
    common = {"command_id": uuid4(), "accepted_at": WHEN}
    event = {**common, "event_id": uuid4(), "resource_id": rid, "occurred_at": WHEN}
    return [
        CreateResource(**common, principal="admin", resource_id=rid, name="Hall A", capacity=10),
        RequestBooking(
            **common, principal="alice", booking_id=booking, resource_id=rid, quantity=2
        ),
        CancelBooking(**common, principal="alice", booking_id=booking, resource_id=rid),
        ResourceCreated(**event, name="Hall A", capacity=10, available=10, version=1),
        BookingConfirmed(
            **event, booking_id=booking, principal="alice", quantity=2, available=8, version=2
        ),
        BookingRejected(
            **event,
            booking_id=booking,
            principal="alice",
            quantity=2,
            reason=RejectionReason.SOLD_OUT,
        ),
        BookingCancelled(
            **event, booking_id=booking, principal="alice", quantity=2, available=10, version=3
        ),
    ]


def record_of(
    message: Message,
    *,
    topic: str = "bookify.commands",
    partition: int = 2,
    offset: int = 41,
    value: bytes | None = None,
) -> Record:
    """``message`` as the Kafka record a subscriber gets (``value`` replaces its bytes)."""
    encoded, headers = encode(message, source="test")
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        key=str(message.partition_key).encode(),
        value=encoded if value is None else value,
        headers=[(k, v.encode()) for k, v in headers.items()],
    )


def deliveries(*messages: Message, topic: str = "bookify.commands") -> list[Delivery]:
    """A batch as a subscriber hands it to ``BatchHandler.many``: consecutive offsets."""
    return [
        Delivery(record_of(m, topic=topic, partition=0, offset=i), m)
        for i, m in enumerate(messages)
    ]
