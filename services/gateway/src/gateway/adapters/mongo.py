"""The gateway's MongoDB adapters (PyMongo async): the consumer's views, read-only, and
the gateway's own ``accepted`` and ``idempotency`` collections, whose inserts (one or two
per accepted request) are group-committed (:mod:`gateway.adapters.group_commit`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from gateway.adapters.group_commit import GroupCommit
from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
    DependencyUnavailableError,
    IdempotencyRecord,
    IdempotencyState,
    UnsafeDocumentError,
)
from shared.mongo import Document, unsafe_keys
from shared.readmodel import (
    BOOKING_LISTS,
    BOOKINGS,
    RESOURCES,
    BookingView,
    ResourceView,
    booking_from_document,
    list_entry_from_document,
    list_entry_id,
    list_head_id,
    resource_from_document,
)
from shared.retention import Retained


@contextmanager
def _mongo_errors() -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        raise DependencyUnavailableError("mongodb", type(exc).__name__) from None


def safe_document(doc: Document) -> Document:
    """Second guard behind the request models' extra="forbid": refuse operator-like keys."""
    if bad := unsafe_keys(doc):
        raise UnsafeDocumentError(f"refusing to write keys {bad}")
    return doc


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


# ------------------------------------------------------------------ views (read-only)


class MongoViewReader:
    """Reads the consumer's read model (:mod:`shared.readmodel`) as it is stored."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._resources: AsyncCollection[Document] = db[RESOURCES]
        self._bookings: AsyncCollection[Document] = db[BOOKINGS]
        self._lists: AsyncCollection[Document] = db[BOOKING_LISTS]

    async def get_resource(self, resource_id: UUID) -> ResourceView | None:
        with _mongo_errors():
            doc = await self._resources.find_one({"_id": str(resource_id)})
        return None if doc is None else resource_from_document(doc)

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]:
        query: Document = {} if after is None else {"_id": {"$gt": str(after)}}
        with _mongo_errors():
            cursor = self._resources.find(query).sort("_id", ASCENDING).limit(limit)
            docs = await cursor.to_list(length=limit)
        return [resource_from_document(d) for d in docs]

    async def get_booking(self, booking_id: UUID) -> BookingView | None:
        with _mongo_errors():
            doc = await self._bookings.find_one({"_id": str(booking_id)})
        return None if doc is None else booking_from_document(doc)

    async def newest_listed(self, principal: str) -> int:
        """From the hint up by probing: the hint may lag, and numbers are dense."""
        with _mongo_errors():
            head = await self._lists.find_one({"_id": list_head_id(principal)})
            newest = 0 if head is None else int(head["newest"])
            while await self._lists.find_one(
                {"_id": list_entry_id(principal, newest + 1)}, {"_id": 1}
            ):
                newest += 1
        return newest

    async def listed(self, principal: str, numbers: Sequence[int]) -> list[BookingView | None]:
        with _mongo_errors():
            docs = await asyncio.gather(
                *(self._lists.find_one({"_id": list_entry_id(principal, n)}) for n in numbers)
            )
        return [None if doc is None else list_entry_from_document(doc) for doc in docs]


# ------------------------------------------------------------------ gateway's own db


class MongoAcceptedStore:
    def __init__(self, db: AsyncDatabase[Document], group: GroupCommit | None = None) -> None:
        self._col: AsyncCollection[Document] = db["accepted"]
        self._inserts = (group or GroupCommit()).inserter(self._col)

    def retained(self, seconds: float) -> Retained:
        """Needed until the read model has the outcome; a day is plenty (shared.retention)."""
        return Retained(self._col, "accepted_at", seconds)

    async def close(self) -> None:
        """Write what is still waiting to be group-committed."""
        await self._inserts.close()

    async def record(self, record: AcceptedRecord) -> None:
        doc: Document = {
            "_id": str(record.id),
            "kind": record.kind.value,
            "principal": record.principal,
            "resource_id": str(record.resource_id),
            "command_id": str(record.command_id),
            "accepted_at": record.accepted_at,
        }
        if record.kind is AcceptedKind.BOOKING:
            doc["quantity"] = record.quantity
        else:
            doc["name"] = record.name
            doc["capacity"] = record.capacity
        with _mongo_errors(), suppress(DuplicateKeyError):  # a retried publish: keep the first
            await self._inserts.insert(safe_document(doc))

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None:
        with _mongo_errors():
            doc = await self._col.find_one({"_id": str(entity_id), "kind": kind.value})
        if doc is None:
            return None
        return AcceptedRecord(
            id=_uuid(doc["_id"]),
            kind=AcceptedKind(doc["kind"]),
            principal=str(doc["principal"]),
            resource_id=_uuid(doc["resource_id"]),
            command_id=_uuid(doc["command_id"]),
            accepted_at=doc["accepted_at"],
            quantity=doc.get("quantity"),
            name=doc.get("name"),
            capacity=doc.get("capacity"),
        )


class MongoIdempotencyStore:
    """``idempotency`` records; the unique ``_id`` (hash of principal+operation+key)
    resolves concurrent duplicates, which FerretDB and MongoDB both enforce."""

    def retained(self, seconds: float) -> Retained:
        """A key means "the same request" for ``seconds`` (README: 24 h by default)."""
        return Retained(self._col, "accepted_at", seconds)

    def __init__(self, db: AsyncDatabase[Document], group: GroupCommit | None = None) -> None:
        self._col: AsyncCollection[Document] = db["idempotency"]
        self._inserts = (group or GroupCommit()).inserter(self._col)

    async def close(self) -> None:
        """Write what is still waiting to be group-committed."""
        await self._inserts.close()

    @staticmethod
    def _from_doc(doc: Mapping[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(
            key_id=str(doc["_id"]),
            principal=str(doc["principal"]),
            operation=str(doc["operation"]),
            request_hash=str(doc["request_hash"]),
            entity_id=_uuid(doc["entity_id"]),
            command_id=_uuid(doc["command_id"]),
            accepted_at=doc["accepted_at"],
            state=IdempotencyState(doc["state"]),
            updated_at=doc.get("updated_at"),
            location=doc.get("location"),
            response=doc.get("response"),
        )

    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        doc: Document = {
            "_id": record.key_id,
            "principal": record.principal,
            "operation": record.operation,
            "request_hash": record.request_hash,
            "entity_id": str(record.entity_id),
            "command_id": str(record.command_id),
            "accepted_at": record.accepted_at,
            "state": record.state.value,
            "updated_at": record.updated_at or record.accepted_at,
        }
        with _mongo_errors():
            try:
                await self._inserts.insert(safe_document(doc))
            except DuplicateKeyError:
                existing = await self._col.find_one({"_id": record.key_id})
                if existing is None:  # deleted in between; extremely unlikely, report busy
                    raise DependencyUnavailableError("mongodb", "idempotency race") from None
                return self._from_doc(existing)
        return None

    async def get(self, key_id: str) -> IdempotencyRecord | None:
        with _mongo_errors():
            doc = await self._col.find_one({"_id": key_id})
        return None if doc is None else self._from_doc(doc)

    async def mark_failed(self, key_id: str) -> None:
        with _mongo_errors():
            await self._col.update_one(
                # never downgrade a completed record (a concurrent takeover may have won)
                {"_id": key_id, "state": IdempotencyState.PENDING.value},
                {"$set": {"state": IdempotencyState.FAILED.value}},
            )
