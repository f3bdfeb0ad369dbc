"""Bookify's message contracts: commands, events and their Kafka envelope."""

from shared.events.base import Command, Event, Message, utcnow
from shared.events.commands import (
    MAX_CAPACITY,
    MAX_QUANTITY,
    CancelBooking,
    CreateResource,
    RequestBooking,
)
from shared.events.envelope import (
    ALL_TYPES,
    COMMAND_TYPES,
    EVENT_TYPES,
    MalformedMessageError,
    decode,
    encode,
)
from shared.events.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    RejectionReason,
    ResourceCreated,
)

__all__ = [
    "ALL_TYPES",
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "MAX_CAPACITY",
    "MAX_QUANTITY",
    "BookingCancelled",
    "BookingConfirmed",
    "BookingRejected",
    "CancelBooking",
    "Command",
    "CreateResource",
    "Event",
    "MalformedMessageError",
    "Message",
    "RejectionReason",
    "RequestBooking",
    "ResourceCreated",
    "decode",
    "encode",
    "utcnow",
]
