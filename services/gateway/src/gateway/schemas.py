"""HTTP request and response bodies. Requests forbid unknown fields (422), so no
client-chosen key (``$where``, ``a.b``) can ride along into a MongoDB document."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events import MAX_CAPACITY, MAX_QUANTITY

# strict: "2", 2.0 and true are wrong types for a count, not spellings of it.
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Capacity = Annotated[int, Field(strict=True, ge=1, le=MAX_CAPACITY)]
Name = Annotated[str, Field(strict=True, min_length=1, max_length=200)]

MAX_PAGE_SIZE = 100

BookingStatus = Literal["pending", "confirmed", "rejected", "cancelled"]
DecidedStatus = Literal["confirmed", "rejected", "cancelled"]  # what a list holds


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceCreate(RequestModel):
    name: Name
    capacity: Capacity


class BookingCreate(RequestModel):
    resource_id: UUID
    quantity: Quantity


class ResourceOut(BaseModel):
    id: UUID
    name: str
    capacity: int
    available: int
    updated_at: datetime | None = Field(
        description="When the read model last changed; null while creation is still pending."
    )


class ResourceAccepted(BaseModel):
    id: UUID
    status: Literal["pending"] = "pending"
    name: str
    capacity: int
    accepted_at: datetime


class ResourcePage(BaseModel):
    items: list[ResourceOut]
    next_cursor: UUID | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class BookingOut(BaseModel):
    id: UUID
    resource_id: UUID
    quantity: int
    status: BookingStatus
    reason: str | None = None
    accepted_at: datetime
    updated_at: datetime


class BookingUpdate(BaseModel):
    """A change to one of the caller's bookings, as GET /v1/bookings/events sends it."""

    id: UUID
    resource_id: UUID
    quantity: int
    status: BookingStatus
    reason: str | None = None
    updated_at: datetime


class SeatsOut(BaseModel):
    """Seats left on a resource after its ledger entry ``version``."""

    id: UUID
    available: int
    version: int
    updated_at: datetime | None


class Reconnect(BaseModel):
    """The stream ends here; reconnect (with Last-Event-ID) for what follows."""

    reason: Literal["too_slow", "max_age", "shutdown"]


class BookingAccepted(BaseModel):
    id: UUID
    status: Literal["pending"] = "pending"
    resource_id: UUID
    quantity: int
    accepted_at: datetime


class BookingPage(BaseModel):
    items: list[BookingOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null once the oldest booking is "
        "passed. A page filtered by status or resource may hold fewer than `limit` items "
        "(even none) and still have a next page."
    )


# A list cursor is the number of the next entry to read, opaque to clients.
_CURSOR = re.compile(r"b1\.([1-9][0-9]{0,17})")


def encode_list_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"b1.{number}".encode()).decode().rstrip("=")


def decode_list_cursor(cursor: str) -> int:
    """The entry number in ``cursor``; ValueError when it is not one this API gave."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from a previous page's next_cursor") from None
    if (match := _CURSOR.fullmatch(text)) is None:
        raise ValueError("not a cursor from a previous page's next_cursor")
    return int(match.group(1))
