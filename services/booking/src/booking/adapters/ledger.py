"""The append-only resource ledger in MongoDB (collection ``ledger``).

An entry's ``_id`` is ``"<resource_id>:<seq:012d>"`` (:func:`entry_id`), so the primary key
is the optimistic concurrency check: the second writer of a seq fails, as event stores check
expected versions. The unique ``op_key`` index makes a booking's decision happen once even
with a zombie worker. These two unique indexes are the only concurrency control. No document
is ever updated: FerretDB does not make read-modify-write atomic, and an insert needs no
atomicity beyond the indexes.

Cost. On MongoDB every access here is an index look-up. On FerretDB v1 (SQLite) inserts and
``_id`` reads use an index (the latter only as `bookify infra` builds it, see
``bookify.infra.ferretdb``), but any other filter or sort scans the collection in Go (~50 us
per document: 0.5 s at 10k). So the hot path is one insert (the caller caches heads, see
``booking.service_layer.heads``), rare paths read by ``_id`` only, and ``ledger_ops`` turns
op_key look-ups into ``_id`` reads where it can (see :meth:`MongoLedgerRepository.find_by_op_key`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from booking.domain import AlreadyDecided, ConcurrencyConflict, EntryKind, LedgerEntry
from shared.events import RejectionReason
from shared.retention import Retained

Document = dict[str, Any]

DUPLICATE_KEY = 11000  # the server's error code for a unique index refusing a write
COLLECTION = "ledger"
OPS_COLLECTION = "ledger_ops"
# The most documents FerretDB v1 inserts as one ordered unit (see append_many); a real MongoDB
# honours ordered=True across any batch, so this only costs it a few more round trips.
ORDERED_CHUNK = 100


class LedgerCorruptionError(RuntimeError):
    """The server stored entries after one it refused in an ordered insert."""


class LedgerRepository(Protocol):
    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        """The entry at ``seq`` of the resource, or None: one primary-key look-up.

        Seqs are dense (1..n, an entry is only ever appended right after an existing one), so
        a resource's head can be found with these alone.
        """
        ...

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None:
        """The entry recording the operation, or None. Off the hot path (it may scan)."""
        ...

    async def append_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Append ``entries`` in order, stopping at the first one refused; how many were stored.

        One round trip for a whole batch. A refused entry (its seq taken, or its op_key
        recorded) and every entry after it are not stored: the caller decides those again
        one by one, where :meth:`append` says why each was refused.
        """
        ...

    async def append(self, entry: LedgerEntry) -> None:
        """Append ``entry``.

        Raises :class:`AlreadyDecided` (carrying the stored entry) when its op_key exists,
        else :class:`ConcurrencyConflict` when its (resource_id, seq) is taken. When both are
        taken either may be raised: at a fresher seq the caller's next append answers
        AlreadyDecided.
        """
        ...


def entry_id(resource_id: UUID | str, seq: int) -> str:
    """The primary key of an entry; zero-padded so ids sort by seq within a resource."""
    return f"{resource_id}:{seq:012d}"


class MongoLedgerRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._ledger: AsyncCollection[Document] = db[COLLECTION]
        # {_id: op_key, entry_id}: written after the entry, never changed (an op_key has one
        # entry, ever), so a pointer found is always right; a missing one (a crash between the
        # two inserts, or an entry not written yet) falls back to the op_key index.
        self._ops: AsyncCollection[Document] = db[OPS_COLLECTION]

    async def ensure_indexes(self) -> None:
        # The primary key is the (resource, seq) check; this index is kept anyway (its insert
        # cost on FerretDB is below the noise of ~1 ms). It guards against writers that do not
        # use entry_id() - entries of the previous ObjectId-keyed shape, or a worker of that
        # version still running during a deploy: such a mix then fails loudly (ContentionError,
        # then the DLQ) instead of recording one seq twice. And per-resource reads (operators,
        # the chaos tests, a one-query head look-up on MongoDB) need it. The hot path never
        # reads it.
        await self._ledger.create_index(
            [("resource_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="resource_seq"
        )
        await self._ledger.create_index([("op_key", ASCENDING)], unique=True, name="op_key")

    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        doc = await self._ledger.find_one({"_id": entry_id(resource_id, seq)})
        return None if doc is None else to_entry(doc)

    async def find_by_op_key(self, op_key: str) -> LedgerEntry | None:
        pointer = await self._ops.find_one({"_id": op_key})
        if pointer is not None:
            doc = await self._ledger.find_one({"_id": pointer["entry_id"]})
            if doc is not None:
                return to_entry(doc)
        # The authority: the unique op_key index (a whole-collection scan on FerretDB).
        doc = await self._ledger.find_one({"op_key": op_key})
        if doc is None:
            return None
        await self._point(_pointer(op_key, doc["_id"], doc["recorded_at"]))
        return to_entry(doc)

    async def append(self, entry: LedgerEntry) -> None:
        try:
            await self._ledger.insert_one(to_document(entry))
        except DuplicateKeyError:
            raise await self._refusal(entry) from None
        await self._point(
            _pointer(entry.op_key, entry_id(entry.resource_id, entry.seq), entry.recorded_at)
        )

    async def append_many(self, entries: Sequence[LedgerEntry]) -> int:
        stored = 0
        # FerretDB v1 stops an ordered insert at the first refusal only within each of its own
        # chunks of ORDERED_CHUNK documents, and goes on with the next chunk: entries decided
        # after a refused one would then be stored on a head that never was (a fork, seats
        # over- or under-counted). So never send it more than one chunk per insert.
        for start in range(0, len(entries), ORDERED_CHUNK):
            chunk = entries[start : start + ORDERED_CHUNK]
            refused_at = await self._insert_ordered(chunk)
            stored += len(chunk) if refused_at is None else refused_at
            if refused_at is not None:
                break
        await self._point_many(entries[:stored])
        return stored

    async def _insert_ordered(self, chunk: Sequence[LedgerEntry]) -> int | None:
        """Insert ``chunk`` in order; the index of the entry refused, or None if all stored."""
        try:
            await self._ledger.insert_many([to_document(e) for e in chunk], ordered=True)
            return None
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            refused_at = int(errors[0]["index"])
            if int(exc.details.get("nInserted", refused_at)) > refused_at:
                # The server went on past the refusal: the ledger may hold a fork. Stop loudly
                # (ContentionError's path: retried, then the DLQ) rather than build on it.
                raise LedgerCorruptionError(
                    f"the server stored {exc.details['nInserted']} entries of an ordered insert "
                    f"refused at index {refused_at} (resource {chunk[0].resource_id})"
                ) from exc
            return refused_at

    async def _refusal(self, entry: LedgerEntry) -> AlreadyDecided | ConcurrencyConflict:
        """Why the insert of ``entry`` was refused.

        FerretDB does not name the index that refused it, so ask the primary key first (a point
        look-up, and the common case: a seq race). Only a free seq sends us to the op_key.
        """
        holder = await self.get(entry.resource_id, entry.seq)
        if holder is not None and holder.op_key == entry.op_key:
            return AlreadyDecided(holder)
        if holder is None:
            existing = await self.find_by_op_key(entry.op_key)
            if existing is not None:
                return AlreadyDecided(existing)
        # The seq is another operation's. Ours may be recorded too, at another seq: deciding
        # again at a fresher seq leaves only the op_key to clash, which then answers.
        return ConcurrencyConflict(str(entry.resource_id), entry.seq, current=holder)

    def retained(self, seconds: float) -> Retained:
        """Pointers only save a scan: one that expired costs a look-up by op_key, once."""
        return Retained(self._ops, "recorded_at", seconds)

    async def _point_many(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        pointers = [{"_id": e.op_key, "entry_id": entry_id(e.resource_id, e.seq)} for e in entries]
        try:
            await self._ops.insert_many(pointers, ordered=False)
        except BulkWriteError as exc:
            # Duplicates are someone else's copies of the same pointers (see _point).
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def _point(self, pointer: Document) -> None:
        # A duplicate is someone else's copy of the same pointer: an op_key has one entry, ever.
        with contextlib.suppress(DuplicateKeyError):
            await self._ops.insert_one(pointer)


def _pointer(op_key: str, target: str, at: datetime) -> Document:
    return {"_id": op_key, "entry_id": target, "recorded_at": at}


def to_document(entry: LedgerEntry) -> Document:
    return {
        "_id": entry_id(entry.resource_id, entry.seq),
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
