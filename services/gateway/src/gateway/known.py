"""In-process memory of ids known to exist, so a hot resource costs no read per booking."""

from __future__ import annotations

from uuid import UUID

from cachetools import LRUCache


class KnownIds:
    """A bounded set of ids; past ``capacity`` the least recently used is forgotten.

    Only for facts that never turn false: a resource, once seen in the views or accepted
    here, exists forever (resources are never deleted), so an entry can be old but never
    wrong, and forgetting one only costs a read. Absence is not remembered: an unknown id
    may be created a moment later.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._ids: LRUCache[UUID, bool] | None = LRUCache(capacity) if capacity else None

    def knows(self, id_: UUID) -> bool:
        # get(), not `in`: a look-up makes the id the most recently used.
        return self._ids is not None and self._ids.get(id_, False)

    def __len__(self) -> int:
        return 0 if self._ids is None else len(self._ids)

    def add(self, id_: UUID) -> None:
        if self._ids is not None:
            self._ids[id_] = True
