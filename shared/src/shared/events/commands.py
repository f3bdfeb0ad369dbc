"""Commands: what the gateway asks the booking service to do."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import Field

from shared.events.base import Command

MAX_CAPACITY = 100_000
MAX_QUANTITY = 10


class CreateResource(Command):
    ce_type: ClassVar[str] = "bookify.resource.create.v1"

    resource_id: UUID
    name: str = Field(min_length=1, max_length=200)
    capacity: int = Field(ge=1, le=MAX_CAPACITY)

    @property
    def partition_key(self) -> UUID:
        return self.resource_id


class RequestBooking(Command):
    ce_type: ClassVar[str] = "bookify.booking.request.v1"

    booking_id: UUID
    resource_id: UUID
    quantity: int = Field(ge=1, le=MAX_QUANTITY)

    @property
    def partition_key(self) -> UUID:
        return self.resource_id


class CancelBooking(Command):
    ce_type: ClassVar[str] = "bookify.booking.cancel.v1"

    booking_id: UUID
    resource_id: UUID

    @property
    def partition_key(self) -> UUID:
        return self.resource_id
