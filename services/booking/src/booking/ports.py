"""Booking's ports: the ledger store and the event publisher its handlers talk to; Mongo and
Kafka in production (:mod:`booking.adapters`), fakes in unit tests."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol
from uuid import UUID

from booking.domain import LedgerEntry
from shared.events import Event


class LedgerRepository(Protocol):
    async def get(self, resource_id: UUID, seq: int) -> LedgerEntry | None:
        """The entry at ``seq`` of the resource, or None: one primary-key look-up.

        Seqs are dense (1..n, an entry is only ever appended right after an existing one), so
        a resource's head can be found with these alone.
        """
        ...

    async def find(self, op_key: str, resource_id: UUID, *, head: int) -> LedgerEntry | None:
        """The entry recording the operation on the resource, or None: ``_id`` reads only.

        ``head`` is the newest seq of the resource the caller knows: an entry whose pointer
        a crash lost is among the newest ones (see :class:`MongoLedgerRepository`).
        """
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


class EventPublisher(Protocol):
    async def publish(self, event: Event) -> None:
        """Return once Kafka acknowledged the event (acks=all)."""
        ...

    async def send(self, event: Event) -> Awaitable[Any]:
        """Hand ``event`` to the producer now, in call order; await the result for the ack.

        Sends made one after another and awaited together go out in few produce requests,
        in order per partition, instead of one acknowledged round trip each.
        """
        ...
