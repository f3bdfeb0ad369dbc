"""Each resource's newest ledger entry (its head), as this process last saw it.

Deciding needs the head. Reading it with a query (filter by resource, sort by seq) costs a
whole-collection scan on FerretDB, so this process remembers the heads it has read or
appended (then a command costs one insert), and finds the others with primary-key look-ups
only: O(log n) of them, each an index seek (on FerretDB too, as `bookify infra` builds it).

A cached head may be stale (another process appended since: a zombie, a rebalance). That is
safe: an append at its seq + 1 is refused by the primary key, and the caller refreshes and
decides again. A cached head is never *ahead* of the ledger: it is only ever an entry that was
read back or appended. (Dropping the database under a running worker breaks that; restart it.)
"""

from __future__ import annotations

from uuid import UUID

from cachetools import LRUCache

from booking.domain import LedgerEntry
from booking.ports import LedgerRepository

HEADS_CACHED = 10_000
"""Resources whose head a process remembers (least recently used forgotten first)."""


class LedgerHeads:
    def __init__(self, ledger: LedgerRepository, capacity: int = HEADS_CACHED) -> None:
        if capacity < 1:
            raise ValueError("the head cache needs room for at least one resource")
        self._ledger = ledger
        self._heads: LRUCache[UUID, LedgerEntry] = LRUCache(capacity)

    def __len__(self) -> int:
        return len(self._heads)

    async def head(
        self, resource_id: UUID, *, at_least: LedgerEntry | None = None
    ) -> LedgerEntry | None:
        """The resource's head: the cached one (maybe stale), else found in the ledger.

        ``at_least`` is an entry of the resource read elsewhere: a cached head older than it
        is known to be stale, so the search starts from it instead.
        """
        cached = self._heads.get(resource_id)  # a look-up makes it the most recently used
        if cached is None or (at_least is not None and cached.seq < at_least.seq):
            return await self.refresh(resource_id, at_least)
        return cached

    async def refresh(
        self, resource_id: UUID, known: LedgerEntry | None = None
    ) -> LedgerEntry | None:
        """The head as of now, searched forward from ``known`` or the cached head."""
        cached = self._heads.get(resource_id)
        if known is None or (cached is not None and cached.seq > known.seq):
            known = cached
        head = await find_head(self._ledger, resource_id, known)
        if head is not None:
            self.advance(head)
        return head

    def advance(self, entry: LedgerEntry) -> None:
        """Remember ``entry`` (just appended or read) if it is newer than the cached head."""
        cached = self._heads.get(entry.resource_id)
        if cached is None or cached.seq < entry.seq:
            self._heads[entry.resource_id] = entry


async def find_head(
    ledger: LedgerRepository, resource_id: UUID, known: LedgerEntry | None = None
) -> LedgerEntry | None:
    """The newest entry of the resource, at or after ``known``, by primary-key look-ups only.

    Seqs are dense, so "seq s exists" holds for s = 1..n and for no s after: gallop forward
    (known + 1, + 2, + 4, ...) to the first missing seq, then binary-search the gap. That is
    about 2 * log2(entries after ``known``) look-ups. Entries appended meanwhile only turn
    misses into hits, so the answer is an entry that was the head at some point of the search:
    at worst stale, which the append that follows detects.
    """
    best = known
    base = 0 if known is None else known.seq
    step = 1
    while True:
        probe = await ledger.get(resource_id, base + step)
        if probe is None:
            break
        best = probe
        step *= 2
    # best.seq (or base) exists, base + step does not; search strictly between them.
    low = base if best is None else best.seq
    high = base + step
    while high - low > 1:
        middle = (low + high) // 2
        probe = await ledger.get(resource_id, middle)
        if probe is None:
            high = middle
        else:
            low, best = middle, probe
    return best
