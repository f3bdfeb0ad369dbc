"""The views in MongoDB (database ``settings.views_db``), written only by this service.

Every guard lives in the update's filter, never in a read before the write: a guarded
upsert whose filter does not match tries to insert the same ``_id`` and fails with a
duplicate key, which is exactly "a newer state is already there". That is one
single-document operation on MongoDB and, on FerretDB (no transactions, no atomic
read-modify-write), still safe because this consumer is the partition's only writer and
unique ``_id`` is enforced. Every write is idempotent, so a crash between two of them is
repaired by simply applying the event again.

Documents (ids as strings, times as BSON dates):

- ``bookings``: {_id: booking_id, principal, resource_id, quantity,
  status: "confirmed"|"rejected"|"cancelled", reason: str|None, accepted_at, updated_at}
- ``resources``: {_id: resource_id, name, capacity, available, version, created_at, updated_at}
  (``name``/``capacity``/``created_at`` are None until ResourceCreated is seen)
- ``notifications``: {_id: event_id, principal, booking_id, resource_id, kind, text, created_at}
- ``processed_events``: {_id: event_id, type: ce_type, processed_at}
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from consumer.domain import (
    BookingStatus,
    BookingView,
    Notification,
    ResourceChange,
    ResourceView,
    blocking_statuses,
)
from shared.mongo import Document

BOOKINGS = "bookings"
RESOURCES = "resources"
NOTIFICATIONS = "notifications"
PROCESSED_EVENTS = "processed_events"


class MongoViewRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._bookings = db[BOOKINGS]
        self._resources = db[RESOURCES]
        self._notifications = db[NOTIFICATIONS]
        self._processed = db[PROCESSED_EVENTS]

    async def ensure_indexes(self) -> None:
        """Idempotent; the gateway looks bookings and notifications up by principal."""
        await self._bookings.create_index([("principal", ASCENDING)], name="principal")
        await self._notifications.create_index(
            [("principal", ASCENDING), ("created_at", ASCENDING)], name="principal_created_at"
        )

    async def ping(self) -> None:
        await self._db.command("ping")

    async def is_processed(self, event_id: str) -> bool:
        return await self._processed.find_one({"_id": event_id}, {"_id": 1}) is not None

    async def mark_processed(self, event_id: str, event_type: str, at: datetime) -> bool:
        return await _insert_once(
            self._processed, {"_id": event_id, "type": event_type, "processed_at": at}
        )

    async def apply_resource(self, change: ResourceChange) -> bool:
        fields: Document = {
            "available": change.available,
            "version": change.version,
            "updated_at": change.at,
        }
        details = _details(change)
        try:
            result = await self._resources.update_one(
                {"_id": change.resource_id, "version": {"$lt": change.version}},
                {"$set": {**fields, **details}},
                upsert=True,
            )
        except DuplicateKeyError:
            pass  # a newer (or this very) version is stored already
        else:
            if result.upserted_id is not None and not details:
                # First seen through a booking: keep the documented shape until it is
                # named. (Not $setOnInsert: FerretDB v1 drops null values from it.)
                await self._resources.update_one(
                    {"_id": change.resource_id, "name": {"$exists": False}},
                    {"$set": {"name": None, "capacity": None, "created_at": None}},
                )
            return True
        if not details:
            return False
        result = await self._resources.update_one(
            {"_id": change.resource_id, "name": None}, {"$set": details}
        )
        return result.modified_count > 0

    async def apply_booking(self, view: BookingView) -> bool:
        blocked = sorted(s.value for s in blocking_statuses(view.status))
        try:
            await self._bookings.update_one(
                {"_id": view.booking_id, "status": {"$nin": blocked}},
                {
                    "$set": {
                        "principal": view.principal,
                        "resource_id": view.resource_id,
                        "quantity": view.quantity,
                        "status": view.status.value,
                        "reason": view.reason,
                        "updated_at": view.updated_at,
                    },
                    # A cancellation keeps the time the booking itself was accepted.
                    "$setOnInsert": {"accepted_at": view.accepted_at},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def add_notification(self, notification: Notification) -> bool:
        return await _insert_once(
            self._notifications,
            {
                "_id": notification.event_id,
                "principal": notification.principal,
                "booking_id": notification.booking_id,
                "resource_id": notification.resource_id,
                "kind": notification.kind.value,
                "text": notification.text,
                "created_at": notification.created_at,
            },
        )

    async def get_resource(self, resource_id: str) -> ResourceView | None:
        doc = await self._resources.find_one({"_id": resource_id})
        if doc is None:
            return None
        return ResourceView(
            resource_id=doc["_id"],
            name=doc.get("name"),
            capacity=doc.get("capacity"),
            available=doc["available"],
            version=doc["version"],
            created_at=doc.get("created_at"),
            updated_at=doc["updated_at"],
        )

    async def get_booking(self, booking_id: str) -> BookingView | None:
        doc = await self._bookings.find_one({"_id": booking_id})
        if doc is None:
            return None
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


def _details(change: ResourceChange) -> Document:
    if change.details is None:
        return {}
    return {
        "name": change.details.name,
        "capacity": change.details.capacity,
        "created_at": change.details.created_at,
    }


async def _insert_once(collection: AsyncCollection[Document], doc: Document) -> bool:
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True
