"""The views in MongoDB (database ``settings.views_db``), written only by this service.

``bookings`` and ``resources`` are the read model the gateway reads: their documents are
written with :mod:`shared.readmodel`'s codec, which also documents their shapes.

Every guard lives in the update's filter, never in a read before the write: a guarded
upsert whose filter does not match tries to insert the same ``_id`` and fails with a
duplicate key, which is exactly "a newer state is already there". That is one
single-document operation on MongoDB and, on FerretDB (no transactions, no atomic
read-modify-write), still safe because this consumer is the partition's only writer and
unique ``_id`` is enforced. Every write is idempotent, so a crash between two of them is
repaired by simply applying the event again.

This service's own documents (ids as strings, times as BSON dates):

- ``notifications``: {_id: event_id, principal, booking_id, resource_id, kind, text, created_at}
- ``processed_events``: {_id: event_id, type: ce_type, processed_at}
- ``booking_list_places``: {_id: booking_id, principal, number}: where a booking stands in
  its principal's list (``shared.readmodel.BOOKING_LISTS``), written before its entry is
  claimed, so a redelivery finds the entry a crash left behind instead of listing it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from cachetools import LRUCache
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from consumer.domain import Notification, ResourceChange, blocking_statuses
from shared.mongo import Document, is_duplicate_key
from shared.readmodel import (
    BOOKING_LISTS,
    BOOKINGS,
    RESOURCE_DETAILS,
    RESOURCES,
    BookingStatus,
    BookingView,
    ResourceView,
    booking_from_document,
    booking_to_document,
    list_entry_id,
    list_entry_to_document,
    list_head_id,
    resource_from_document,
    resource_to_document,
)
from shared.retention import Retained

ALL_STATUSES = frozenset(BookingStatus)
NOTIFICATIONS = "notifications"
PROCESSED_EVENTS = "processed_events"
LIST_PLACES = "booking_list_places"
PRINCIPALS_REMEMBERED = 100_000


class MongoViewRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._bookings = db[BOOKINGS]
        self._resources = db[RESOURCES]
        self._notifications = db[NOTIFICATIONS]
        self._processed = db[PROCESSED_EVENTS]
        self._lists = db[BOOKING_LISTS]
        self._places = db[LIST_PLACES]
        # Each principal's newest list entry as this process last wrote or read it: may be
        # behind (another consumer appended), never ahead; a miss costs a retry, not a read.
        self._newest: LRUCache[str, int] = LRUCache(PRINCIPALS_REMEMBERED)

    def retained(self, seconds: float) -> list[Retained]:
        """The consumer's own records: the dedupe markers and the notifications."""
        return [
            Retained(self._processed, "processed_at", seconds),
            Retained(self._notifications, "created_at", seconds),
        ]

    async def ping(self) -> None:
        await self._db.command("ping")

    async def is_processed(self, event_id: str) -> bool:
        return await self._processed.find_one({"_id": event_id}, {"_id": 1}) is not None

    async def mark_processed(self, event_id: str, event_type: str, at: datetime) -> bool:
        return bool(await self.mark_processed_many([(event_id, event_type)], at))

    async def mark_processed_many(
        self, events: Sequence[tuple[str, str]], at: datetime
    ) -> set[str]:
        docs = [
            {"_id": event_id, "type": event_type, "processed_at": at}
            for event_id, event_type in events
        ]
        duplicates = await _inserts(self._processed, docs)
        return {event_id for i, (event_id, _) in enumerate(events) if i not in duplicates}

    async def apply_resource(self, change: ResourceChange) -> bool:
        return bool(await self.apply_resources([change]))

    async def apply_resources(self, changes: Sequence[ResourceChange]) -> int:
        """One unordered bulk of guarded upserts; the rare follow-ups one by one. How many
        resources changed."""
        updates = [_resource_update(change) for change in changes]
        upserted, stale = await _updates(self._resources, [op for op, _ in updates])
        changed = len(changes) - len(stale)
        for index, (change, (_, details)) in enumerate(zip(changes, updates, strict=True)):
            key = {"_id": change.resource_id}
            if index in upserted and change.details is None:
                # First seen through a booking: keep the documented shape until it is
                # named. (Not $setOnInsert: FerretDB v1 drops null values from it.)
                await self._resources.update_one(
                    {**key, "name": {"$exists": False}}, {"$set": details}
                )
            elif index in stale and change.details is not None:
                # A newer version is stored, maybe still unnamed: name it now.
                result_one = await self._resources.update_one(
                    {**key, "name": None}, {"$set": details}
                )
                changed += result_one.modified_count
        return changed

    async def apply_booking(self, view: BookingView) -> bool:
        return bool(await self.apply_bookings([view]))

    async def apply_bookings(self, views: Sequence[BookingView]) -> int:
        """Each view under its guard, in one or two round trips; how many were stored.

        A decision (confirmed, rejected) may replace nothing at all, so its guarded upsert
        is exactly an insert, which costs FerretDB far less than an upsert: decisions are
        inserted, and only cancellations are guarded updates.
        """
        decisions = [v for v in views if blocking_statuses(v.status) == ALL_STATUSES]
        refused = await _inserts(self._bookings, [booking_to_document(v) for v in decisions])
        updates = []
        for view in views:
            if blocking_statuses(view.status) == ALL_STATUSES:
                continue
            blocked = sorted(s.value for s in blocking_statuses(view.status))
            fields = booking_to_document(view)
            key = {"_id": fields.pop("_id")}
            # A cancellation keeps the time the booking itself was accepted.
            on_insert = {"accepted_at": fields.pop("accepted_at")}
            updates.append(
                {
                    "q": {**key, "status": {"$nin": blocked}},
                    "u": {"$set": fields, "$setOnInsert": on_insert},
                    "upsert": True,
                }
            )
        _, refused_updates = await _updates(self._bookings, updates)
        return len(views) - len(refused) - len(refused_updates)

    async def list_bookings(self, views: Sequence[BookingView]) -> int:
        """Each view in its principal's list (``shared.readmodel.BOOKING_LISTS``); how many
        entries changed.

        A principal's bookings are on every partition, so two consumers may append to one
        list at once, and FerretDB makes no read-modify-write atomic (DESIGN §4): an entry's
        number is claimed by inserting it (the unique ``_id``, as the ledger's seq is), and
        only its booking's own partition, like its booking view, changes it afterwards.

        The usual case goes in bulk, with no read: a decision seen first takes the number
        after the newest this process knows for its principal (remembered, LRU; 1 for one it
        does not know), its place and its entry each inserted with the batch's others in one
        round trip. The rest go one by one (:meth:`_list_one`, from the hint): a booking
        listed already (a status to take, a redelivery), a number taken meanwhile (another
        consumer, or one before this process started), a cancellation. A principal's first
        entry needs no hint: readers and writers start at 1 without one.
        """
        by_principal: dict[str, list[BookingView]] = {}
        for view in sorted(views, key=lambda v: v.accepted_at):
            by_principal.setdefault(view.principal, []).append(view)
        hinted = {p: self._newest.get(p, 0) for p in by_principal}
        newest = dict(hinted)
        claims: list[tuple[int, BookingView]] = []  # (the number it tries first, the view)
        slow: dict[str, list[BookingView]] = {}
        for principal, listed in by_principal.items():
            number = hinted[principal]
            for view in listed:
                if view.status is BookingStatus.CANCELLED:
                    slow.setdefault(principal, []).append(view)
                else:
                    number += 1
                    claims.append((number, view))
        placed = await _inserts(
            self._places,
            [{"_id": v.booking_id, "principal": v.principal, "number": n} for n, v in claims],
        )
        fresh = [claim for index, claim in enumerate(claims) if index not in placed]
        taken = await _inserts(self._lists, [list_entry_to_document(n, v) for n, v in fresh])
        for index, (number, view) in enumerate(fresh):
            if index not in taken:
                newest[view.principal] = max(newest[view.principal], number)
        for index, (_, view) in enumerate(claims):
            if index in placed:
                slow.setdefault(view.principal, []).append(view)
        for index, (_, view) in enumerate(fresh):
            if index in taken:
                slow.setdefault(view.principal, []).append(view)

        async def one_by_one(principal: str, listed: list[BookingView]) -> int:
            head = await self._lists.find_one({"_id": list_head_id(principal)})
            if head is not None:
                newest[principal] = max(newest[principal], int(head["newest"]))
            changed = 0
            for view in sorted(listed, key=lambda v: v.accepted_at):
                number, stored = await self._list_one(view, newest[principal])
                newest[principal] = max(newest[principal], number)
                changed += stored
            return changed

        changed = len(fresh) - len(taken)
        changed += sum(await asyncio.gather(*(one_by_one(p, v) for p, v in slow.items())))
        self._newest.update(newest)
        # The hints only move up; a refused upsert means a newer one is there.
        await _updates(
            self._lists,
            [
                {
                    "q": {"_id": list_head_id(principal), "newest": {"$lt": number}},
                    "u": {"$set": {"newest": number}},
                    "upsert": True,
                }
                for principal, number in newest.items()
                if number > max(1, hinted[principal])
            ],
        )
        return changed

    async def _list_one(self, view: BookingView, newest: int) -> tuple[int, bool]:
        """(the view's entry number, whether the entry changed)."""
        place = await self._places.find_one({"_id": view.booking_id})
        if place is None:
            number = newest + 1
            if view.status is BookingStatus.CANCELLED:
                # Listed only now (decided before lists were kept): its own acceptance time.
                stored = await self.get_booking(view.booking_id)
                view = view if stored is None else replace(view, accepted_at=stored.accepted_at)
            try:
                await self._places.insert_one(
                    {"_id": view.booking_id, "principal": view.principal, "number": number}
                )
            except DuplicateKeyError:  # a second worker on the partition is listing it too
                return await self._list_one(view, newest)
        else:
            number = int(place["number"])
            entry = await self._lists.find_one({"_id": list_entry_id(view.principal, number)})
            if entry is not None and entry["booking_id"] == view.booking_id:
                return number, await self._update_entry(number, view)
            if newest >= number:  # taken: b has no entry, so start past those known
                number = newest + 1
                await self._places.update_one(
                    {"_id": view.booking_id}, {"$set": {"number": number}}
                )
        while True:
            try:
                await self._lists.insert_one(list_entry_to_document(number, view))
                return number, True
            except DuplicateKeyError:
                entry = await self._lists.find_one({"_id": list_entry_id(view.principal, number)})
                if entry is not None and entry["booking_id"] == view.booking_id:
                    return number, await self._update_entry(number, view)
            number += 1  # taken by another booking of the principal: the next one
            await self._places.update_one({"_id": view.booking_id}, {"$set": {"number": number}})

    async def _update_entry(self, number: int, view: BookingView) -> bool:
        """The entry takes the view's status unless the stored one must stay (as the view)."""
        blocked = sorted(s.value for s in blocking_statuses(view.status))
        result = await self._lists.update_one(
            {"_id": list_entry_id(view.principal, number), "status": {"$nin": blocked}},
            {"$set": {"status": view.status.value, "reason": view.reason,
                      "updated_at": view.updated_at}},
        )  # fmt: skip
        return result.modified_count > 0

    async def add_notification(self, notification: Notification) -> bool:
        return bool(await self.add_notifications([notification]))

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        """Insert each once per event id; how many were new."""
        docs = [
            {
                "_id": n.event_id,
                "principal": n.principal,
                "booking_id": n.booking_id,
                "resource_id": n.resource_id,
                "kind": n.kind.value,
                "text": n.text,
                "created_at": n.created_at,
            }
            for n in notifications
        ]
        duplicates = await _inserts(self._notifications, docs)
        return len(docs) - len(duplicates)

    async def get_resource(self, resource_id: str) -> ResourceView | None:
        doc = await self._resources.find_one({"_id": resource_id})
        return None if doc is None else resource_from_document(doc)

    async def get_booking(self, booking_id: str) -> BookingView | None:
        doc = await self._bookings.find_one({"_id": booking_id})
        return None if doc is None else booking_from_document(doc)


def _resource_update(change: ResourceChange) -> tuple[Document, Document]:
    """The guarded upsert of ``change``, and the details it carries (None when unnamed)."""
    fields = resource_to_document(change.first_view())
    key = {"_id": fields.pop("_id")}
    # Availability stays in ``fields``; the details are None unless the change has them.
    details = {name: fields.pop(name) for name in RESOURCE_DETAILS}
    named = change.details is not None
    update = {
        "q": {**key, "version": {"$lt": change.version}},
        "u": {"$set": {**fields, **details} if named else fields},
        "upsert": True,
    }
    return update, details


async def _updates(
    collection: AsyncCollection[Document], updates: Sequence[Document]
) -> tuple[set[int], set[int]]:
    """Run the ``update`` statements in order, in as few round trips as the refusals allow:
    (upserted, refused) indexes.

    A refused guarded upsert is the rule working (a newer state is stored): an answer, not
    an error; anything else raises. The ``update`` command itself, not ``bulk_write``:
    FerretDB v1 leaves ``nModified`` out of a reply with write errors, which PyMongo's bulk
    bookkeeping cannot take, and it stops at the first error even when told not to; so the
    statements are sent ordered, and resent from just after each refusal.
    """
    upserted: set[int] = set()
    refused: set[int] = set()
    start = 0
    while start < len(updates):
        reply = await collection.database.command(
            {"update": collection.name, "updates": list(updates[start:]), "ordered": True}
        )
        upserted.update(start + u["index"] for u in reply.get("upserted", []))
        errors = reply.get("writeErrors", [])
        if not errors:
            break
        error = errors[0]
        if not is_duplicate_key(error):
            raise OperationFailure(f"update of {collection.name} failed: {error}", details=reply)
        refused.add(start + error["index"])
        start += error["index"] + 1
    return upserted, refused


async def _inserts(collection: AsyncCollection[Document], docs: Sequence[Document]) -> set[int]:
    """Insert ``docs`` unordered in one round trip; the indexes already there."""
    if not docs:
        return set()
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not all(is_duplicate_key(e) for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()
