"""The append-only resource ledger in MongoDB (collection ``ledger``).

Two unique indexes are the only concurrency control: (resource_id, seq) makes the second
writer of a seq fail (optimistic concurrency, as event stores check expected versions) and
op_key makes a booking's decision happen once even with a zombie worker. No document is
ever updated: FerretDB does not make read-modify-write atomic, and an insert needs no atomicity
beyond the index.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from booking.domain import AlreadyDecided, ConcurrencyConflict, EntryKind, LedgerEntry
from shared.events import RejectionReason

Document = dict[str, Any]

COLLECTION = "ledger"


class LedgerRepository(Protocol):
    async def latest(self, resource_id: UUID) -> LedgerEntry | None:
        """The newest entry of the resource, i.e. its current state; None if it has none."""
        ...

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None: ...

    async def append(self, entry: LedgerEntry) -> None:
        """Append ``entry``.

        Raises :class:`AlreadyDecided` (carrying the stored entry) when its op_key exists,
        else :class:`ConcurrencyConflict` when its (resource_id, seq) is taken.
        """
        ...


class MongoLedgerRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._ledger: AsyncCollection[Document] = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._ledger.create_index(
            [("resource_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="resource_seq"
        )
        await self._ledger.create_index([("op_key", ASCENDING)], unique=True, name="op_key")

    async def latest(self, resource_id: UUID) -> LedgerEntry | None:
        doc = await self._ledger.find_one(
            {"resource_id": str(resource_id)}, sort=[("seq", DESCENDING)]
        )
        return None if doc is None else to_entry(doc)

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None:
        doc = await self._ledger.find_one({"op_key": op_key})
        return None if doc is None else to_entry(doc)

    async def append(self, entry: LedgerEntry) -> None:
        try:
            await self._ledger.insert_one(to_document(entry))
        except DuplicateKeyError:
            # Which index the server names varies (and both may clash): ask the op_key first,
            # because a decided operation must be re-published, never re-decided.
            existing = await self.find_by_op_key(entry.op_key)
            if existing is not None:
                raise AlreadyDecided(existing) from None
            raise ConcurrencyConflict(str(entry.resource_id), entry.seq) from None


def to_document(entry: LedgerEntry) -> Document:
    return {
        "resource_id": str(entry.resource_id),
        "seq": entry.seq,
        "op_key": entry.op_key,
        "kind": entry.kind.value,
        "booking_id": None if entry.booking_id is None else str(entry.booking_id),
        "principal": entry.principal,
        "quantity": entry.quantity,
        "name": entry.name,
        "capacity": entry.capacity,
        "reserved": entry.reserved,
        "reason": None if entry.reason is None else entry.reason.value,
        "command_id": str(entry.command_id),
        "accepted_at": entry.accepted_at,
        "recorded_at": entry.recorded_at,
    }


def to_entry(doc: Document) -> LedgerEntry:
    return LedgerEntry(
        resource_id=UUID(doc["resource_id"]),
        seq=int(doc["seq"]),
        op_key=doc["op_key"],
        kind=EntryKind(doc["kind"]),
        command_id=UUID(doc["command_id"]),
        principal=doc["principal"],
        accepted_at=doc["accepted_at"],
        recorded_at=doc["recorded_at"],
        capacity=doc.get("capacity"),
        reserved=int(doc["reserved"]),
        booking_id=None if doc.get("booking_id") is None else UUID(doc["booking_id"]),
        quantity=int(doc.get("quantity", 0)),
        name=doc.get("name"),
        reason=None if doc.get("reason") is None else RejectionReason(doc["reason"]),
    )
