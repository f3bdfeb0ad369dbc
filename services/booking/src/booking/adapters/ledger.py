"""The append-only resource ledger in MongoDB (collection ``ledger``).

An entry's ``_id`` is ``"<resource_id>:<seq:012d>"`` (:func:`entry_id`), so the primary key
is the optimistic concurrency check: the second writer of a seq fails, as event stores check
expected versions. The unique ``op_key`` index makes a booking's decision happen once even
with a zombie worker. These two unique indexes are the only concurrency control. No document
is ever updated: FerretDB does not make read-modify-write atomic, and an insert needs no
atomicity beyond the indexes.

Cost. On MongoDB every access here is an index look-up. On FerretDB v1 (SQLite) inserts and
``_id`` reads use an index (the latter only as `bookify infra` builds it, see
``bookify_platform.infra.ferretdb``), but any other filter or sort scans the collection in Go, at a
cost that grows with the ledger (docs/DESIGN.md §4). So every read here is by ``_id``: the
hot path is one insert (the caller caches heads, see ``booking.service_layer.heads``), and an
operation is found through its pointer in ``ledger_ops`` (``_id`` = op_key), or, where a crash
lost the pointer, among the resource's newest entries (:meth:`MongoLedgerRepository.find`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from uuid import UUID

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from booking.domain import AlreadyDecided, ConcurrencyConflict, EntryKind, LedgerEntry
from shared.events import RejectionReason
from shared.logging import get_logger
from shared.mongo import Document, is_duplicate_key

log = get_logger(__name__)

COLLECTION = "ledger"
OPS_COLLECTION = "ledger_ops"
# Marks a ledger_ops collection in which every entry has its pointer (see ensure_pointers).
POINTERS_COMPLETE = "~pointers-complete"
# The most documents FerretDB v1 inserts as one ordered unit (see append_many); a real MongoDB
# honours ordered=True across any batch, so this only costs it a few more round trips.
ORDERED_CHUNK = 100


class LedgerCorruptionError(RuntimeError):
    """The server stored entries after one it refused in an ordered insert."""


def entry_id(resource_id: UUID | str, seq: int) -> str:
    """The primary key of an entry; zero-padded so ids sort by seq within a resource."""
    return f"{resource_id}:{seq:012d}"


class MongoLedgerRepository:
    """The ledger, with a pointer per operation so that every look-up is an ``_id`` read.

    A pointer (``ledger_ops``: ``{_id: op_key, entry_id}``) is written right after its entry
    and never changed or expired (an op_key has one entry, ever), so a pointer found is
    right. Only a crash between the two inserts leaves an entry without one, and then the
    entry is among the resource's newest ``tail`` (the entries of the batch in flight, a
    zombie's too): :meth:`find` looks there, and restores the pointers it finds missing. The
    command of such an entry was not committed, so its redelivery restores them before any
    later command of the partition needs them.
    """

    def __init__(self, db: AsyncDatabase[Document], *, tail: int = 2 * 500) -> None:
        if tail < 1:
            raise ValueError("the tail searched for a lost pointer needs at least one entry")
        self._ledger: AsyncCollection[Document] = db[COLLECTION]
        self._ops: AsyncCollection[Document] = db[OPS_COLLECTION]
        self._tail = tail

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
        await self.ensure_pointers()

    async def ensure_pointers(self) -> None:
        """Give every entry its pointer, once per store (a ledger written before pointers
        were kept for good: they used to expire after ``retention_seconds``).

        The one scan of the ledger in this module, at start-up, and only until it finished
        once: then ``POINTERS_COMPLETE`` is recorded and later starts skip it.
        """
        if await self._ops.find_one({"_id": POINTERS_COMPLETE}) is not None:
            return
        with contextlib.suppress(OperationFailure):  # no such index: nothing to drop
            await self._ops.drop_index("expire_recorded_at")
        restored = 0
        batch: list[LedgerEntry] = []
        async for doc in self._ledger.find({}):
            batch.append(to_entry(doc))
            if len(batch) == ORDERED_CHUNK:
                restored += await self._point_many(batch)
                batch = []
        restored += await self._point_many(batch)
        await self._point({"_id": POINTERS_COMPLETE, "entry_id": None})
        if restored:
            log.warning("ledger_pointers_restored", restored=restored)

    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        doc = await self._ledger.find_one({"_id": entry_id(resource_id, seq)})
        return None if doc is None else to_entry(doc)

    async def find(self, op_key: str, resource_id: UUID, *, head: int) -> LedgerEntry | None:
        pointer = await self._ops.find_one({"_id": op_key})
        if pointer is not None:
            doc = await self._ledger.find_one({"_id": pointer["entry_id"]})
            if doc is not None:
                return to_entry(doc)
        return await self._find_in_tail(op_key, resource_id, head)

    async def _find_in_tail(self, op_key: str, resource_id: UUID, head: int) -> LedgerEntry | None:
        """The operation among the resource's newest ``tail`` entries at or below ``head``.

        Walks down by ``_id``; where it finds it, it restores the pointers of every entry it
        read on the way (a crash loses a whole batch's pointers at once; duplicates are
        ignored). Not found costs ``tail`` reads: an operation never recorded (rare, as the
        gateway only accepts a cancel of a booking it accepted before).
        """
        read: list[LedgerEntry] = []
        for seq in range(head, max(0, head - self._tail), -1):
            entry = await self.get(resource_id, seq)
            if entry is None:
                continue  # above the real head (``head`` was a guess): keep walking down
            read.append(entry)
            if entry.op_key == op_key:
                await self._point_many(read)
                return entry
        return None

    async def append(self, entry: LedgerEntry) -> None:
        try:
            await self._ledger.insert_one(to_document(entry))
        except DuplicateKeyError:
            raise await self._refusal(entry) from None
        await self._point(_pointer(entry))

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
            if not errors or not all(is_duplicate_key(e) for e in errors):
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
        look-up, and the common case: a seq race). Only a free seq sends us to the op_key,
        which the unique index has then proved recorded, below that seq.
        """
        holder = await self.get(entry.resource_id, entry.seq)
        if holder is not None and holder.op_key == entry.op_key:
            return AlreadyDecided(holder)
        if holder is None:
            existing = await self.find(entry.op_key, entry.resource_id, head=entry.seq - 1)
            if existing is None:
                existing = await self._scan_for(entry.op_key)
            if existing is not None:
                return AlreadyDecided(existing)
        # The seq is another operation's. Ours may be recorded too, at another seq: deciding
        # again at a fresher seq leaves only the op_key to clash, which then answers.
        return ConcurrencyConflict(str(entry.resource_id), entry.seq, current=holder)

    async def _scan_for(self, op_key: str) -> LedgerEntry | None:
        """The last resort, a scan on FerretDB: the op_key index refused an entry that has
        neither a pointer nor a place in its resource's tail (pointers deleted by hand)."""
        log.warning("ledger_op_key_scan", op_key=op_key)
        doc = await self._ledger.find_one({"op_key": op_key})
        if doc is None:
            return None
        entry = to_entry(doc)
        await self._point(_pointer(entry))
        return entry

    async def _point_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Insert the pointers of ``entries``; how many were missing."""
        if not entries:
            return 0
        try:
            await self._ops.insert_many([_pointer(e) for e in entries], ordered=False)
        except BulkWriteError as exc:
            # Duplicates are someone else's copies of the same pointers (see _point).
            if not all(is_duplicate_key(e) for e in exc.details.get("writeErrors", [])):
                raise
            return int(exc.details.get("nInserted", 0))
        return len(entries)

    async def _point(self, pointer: Document) -> None:
        # A duplicate is someone else's copy of the same pointer: an op_key has one entry, ever.
        with contextlib.suppress(DuplicateKeyError):
            await self._ops.insert_one(pointer)


def _pointer(entry: LedgerEntry) -> Document:
    return {"_id": entry.op_key, "entry_id": entry_id(entry.resource_id, entry.seq)}


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
