"""Events: what the booking service decided. The read side is built from these alone."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from shared.events.base import Event


class RejectionReason(StrEnum):
    SOLD_OUT = "sold_out"
    UNKNOWN_RESOURCE = "unknown_resource"
    PROCESSING_FAILED = "processing_failed"
    """booking kept failing on the command (it is in the DLQ); no seat was taken."""


class ResourceCreated(Event):
    ce_type: ClassVar[str] = "bookify.resource.created.v1"

    name: str
    capacity: int
    available: int
    version: int = Field(description="Ledger sequence number after this change.")


class BookingConfirmed(Event):
    ce_type: ClassVar[str] = "bookify.booking.confirmed.v1"

    booking_id: UUID
    principal: str
    quantity: int
    available: int
    version: int


class BookingRejected(Event):
    ce_type: ClassVar[str] = "bookify.booking.rejected.v1"

    booking_id: UUID
    principal: str
    quantity: int
    reason: RejectionReason
    detail: str = ""


class BookingCancelled(Event):
    ce_type: ClassVar[str] = "bookify.booking.cancelled.v1"

    booking_id: UUID
    principal: str
    quantity: int
    available: int
    version: int
