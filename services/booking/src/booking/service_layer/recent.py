"""The ledger entries this process stored or read lately, by op_key.

A cancel needs its booking's decision. Read through its pointer that is two round trips to
the store, made one cancel after another inside a batch (py-spy under a crowd's cancels:
docs/PERFORMANCE.md). Most cancels name a booking this very process decided moments ago, so
it remembers them.

Always right: an op_key has one entry, ever (the op_key index), and an entry never changes.
Only entries known to be stored are remembered (one decided in memory may still be refused),
and forgetting one (least recently used first) costs only the pointer read again.
"""

from __future__ import annotations

from uuid import UUID

from cachetools import LRUCache

from booking.domain import LedgerEntry
from booking.ports import LedgerRepository

RECENT_ENTRIES = 20_000
"""Entries a process remembers: under a minute of a 400/s ticket drop (docs/PERFORMANCE.md)."""


class RecentEntries:
    def __init__(self, ledger: LedgerRepository, capacity: int = RECENT_ENTRIES) -> None:
        self._ledger = ledger
        self._entries: LRUCache[str, LedgerEntry] = LRUCache(capacity)

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, entry: LedgerEntry) -> None:
        """``entry`` is stored (appended, or read back)."""
        self._entries[entry.op_key] = entry

    def known(self, op_key: str) -> LedgerEntry | None:
        """The entry recording ``op_key``, if this process remembers it (no round trip)."""
        return self._entries.get(op_key)

    async def find(self, op_key: str, resource_id: UUID, *, head: int) -> LedgerEntry | None:
        """As :meth:`LedgerRepository.find`, from memory when this process knows the entry."""
        entry = self._entries.get(op_key)
        if entry is None:
            entry = await self._ledger.find(op_key, resource_id, head=head)
            if entry is not None:
                self.remember(entry)
        return entry
