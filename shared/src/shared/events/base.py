"""Base classes for everything that travels over Kafka.

Commands are imperative (``RequestBooking``), events are past tense (``BookingConfirmed``).
Both are immutable and carry their CloudEvents type, versioned in the name
(``bookify.booking.confirmed.v1``). A new optional field keeps the version; a breaking
change gets a new type. Readers ignore fields they do not know, so an old consumer can
read a new producer's message (tests/contract proves it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ce_type: ClassVar[str]

    @property
    def message_id(self) -> UUID:
        raise NotImplementedError

    @property
    def partition_key(self) -> UUID:
        """Every message of one resource lands on one partition, so they stay ordered."""
        raise NotImplementedError

    @property
    def time(self) -> datetime:
        """The CloudEvents ``time``: when this happened."""
        raise NotImplementedError


MAX_PRINCIPAL_LENGTH = 200
"""A principal (a token's ``sub``) longer than this is refused at the door (shared.auth)."""


class Command(Message):
    command_id: UUID
    principal: str = Field(min_length=1, max_length=MAX_PRINCIPAL_LENGTH)
    accepted_at: datetime = Field(description="When the gateway accepted the request.")

    @property
    def message_id(self) -> UUID:
        return self.command_id

    @property
    def time(self) -> datetime:
        return self.accepted_at


class Event(Message):
    event_id: UUID
    command_id: UUID = Field(description="The command this event answers.")
    resource_id: UUID
    occurred_at: datetime = Field(default_factory=utcnow)
    accepted_at: datetime = Field(description="When the gateway accepted the command.")

    @property
    def message_id(self) -> UUID:
        return self.event_id

    @property
    def time(self) -> datetime:
        return self.occurred_at

    @property
    def partition_key(self) -> UUID:
        return self.resource_id
