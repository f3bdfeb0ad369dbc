"""The read model: what the consumer writes and the gateway reads, in one place.

Database ``DEFAULT_VIEWS_DB`` (each service's ``views_db`` setting), written only by the
consumer, read by the gateway. Ids are strings, times are BSON dates (timezone-aware):

- ``BOOKINGS``: {_id: booking_id, principal, resource_id, quantity,
  status: "confirmed"|"rejected"|"cancelled", reason: str|None, accepted_at, updated_at}
- ``RESOURCES``: {_id: resource_id, name, capacity, available, version, created_at,
  updated_at}; the ``RESOURCE_DETAILS`` (name, capacity, created_at) are None until
  ResourceCreated is seen: a resource first seen through a booking has only availability.
- ``BOOKING_LISTS``: each principal's decided bookings, numbered 1, 2, 3 … in the order the
  consumer first stored them, so a list is read by ``_id`` equality only (FerretDB v1 serves
  nothing else from an index, DESIGN §4): an entry {_id: "<principal>#<n>", booking_id, and
  the booking's other fields as in ``BOOKINGS``}, and a hint {_id: "<principal>#head",
  newest: n} that may lag behind the newest entry, never pass it (none while a list has one
  entry). Numbers are dense (an
  entry n is inserted only once n - 1 exists), so a reader goes from the hint to the newest
  entry by probing n + 1, n + 2 … and pages down from there.

:class:`BookingView` and :class:`ResourceView` are those documents as values, and the
``*_to_document`` / ``*_from_document`` functions are the only translation between the
two. The consumer's own collections (notifications, processed events) are not part of
this contract. Plain values only: no I/O, so the consumer's domain can speak in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

DEFAULT_VIEWS_DB: Final = "bookify_views"
BOOKINGS: Final = "bookings"
RESOURCES: Final = "resources"
BOOKING_LISTS: Final = "booking_lists"

# The resource fields fixed at creation; None until ResourceCreated is seen.
RESOURCE_DETAILS: Final = ("name", "capacity", "created_at")


class BookingStatus(StrEnum):
    """A decided booking's status; "pending" is the gateway's, never in the read model."""

    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class BookingView:
    booking_id: str
    principal: str
    resource_id: str
    quantity: int
    status: BookingStatus
    reason: str | None
    accepted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ResourceView:
    """``name``, ``capacity`` and ``created_at`` are None until the resource is created."""

    resource_id: str
    name: str | None
    capacity: int | None
    available: int
    version: int
    created_at: datetime | None
    updated_at: datetime


def booking_to_document(view: BookingView) -> dict[str, Any]:
    return {
        "_id": view.booking_id,
        "principal": view.principal,
        "resource_id": view.resource_id,
        "quantity": view.quantity,
        "status": view.status.value,
        "reason": view.reason,
        "accepted_at": view.accepted_at,
        "updated_at": view.updated_at,
    }


def booking_from_document(doc: Mapping[str, Any]) -> BookingView:
    return BookingView(
        booking_id=doc["_id"],
        principal=doc["principal"],
        resource_id=doc["resource_id"],
        quantity=doc["quantity"],
        status=BookingStatus(doc["status"]),
        reason=doc.get("reason"),
        accepted_at=doc["accepted_at"],
        updated_at=doc["updated_at"],
    )


def resource_to_document(view: ResourceView) -> dict[str, Any]:
    return {
        "_id": view.resource_id,
        "name": view.name,
        "capacity": view.capacity,
        "available": view.available,
        "version": view.version,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }


def resource_from_document(doc: Mapping[str, Any]) -> ResourceView:
    return ResourceView(
        resource_id=doc["_id"],
        # .get: right after its first upsert an unnamed resource lacks the details briefly
        name=doc.get("name"),
        capacity=doc.get("capacity"),
        available=doc["available"],
        version=doc["version"],
        created_at=doc.get("created_at"),
        updated_at=doc["updated_at"],
    )


# A principal is any string, but the part after the last "#" is a number or "head", so no
# two principals' ids can meet.
def list_entry_id(principal: str, number: int) -> str:
    return f"{principal}#{number}"


def list_head_id(principal: str) -> str:
    return f"{principal}#head"


def list_entry_to_document(number: int, view: BookingView) -> dict[str, Any]:
    doc = booking_to_document(view)
    doc["booking_id"] = doc.pop("_id")
    doc["_id"] = list_entry_id(view.principal, number)
    return doc


def list_entry_from_document(doc: Mapping[str, Any]) -> BookingView:
    return booking_from_document({**doc, "_id": doc["booking_id"]})
