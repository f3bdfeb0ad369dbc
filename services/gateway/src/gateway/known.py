"""In-process memory of ids known to exist, so a hot resource costs no read per booking."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID


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
        self._capacity = capacity
        self._ids: OrderedDict[UUID, None] = OrderedDict()

    def knows(self, id_: UUID) -> bool:
        if id_ not in self._ids:
            return False
        self._ids.move_to_end(id_)
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, id_: UUID) -> None:
        if self._capacity == 0:
            return
        self._ids[id_] = None
        self._ids.move_to_end(id_)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
