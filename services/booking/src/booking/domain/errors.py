"""Domain errors: what a ledger append can answer besides success, and a broken ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from booking.domain.model import LedgerEntry


class ConcurrencyConflict(Exception):  # noqa: N818 - the name the team contract uses
    """Another writer appended the same (resource_id, seq) first: reload and decide again."""

    def __init__(self, resource_id: str, seq: int, current: LedgerEntry | None = None) -> None:
        super().__init__(f"ledger seq {seq} of resource {resource_id} is already taken")
        self.resource_id = resource_id
        self.seq = seq
        self.current = current
        """The entry holding ``seq``, when the store read it anyway (a head newer than ours)."""


class AlreadyDecided(Exception):  # noqa: N818 - an outcome, not a failure
    """The operation (``op_key``) already has its ledger entry: re-publish, never re-decide."""

    def __init__(self, existing: LedgerEntry) -> None:
        super().__init__(f"{existing.op_key} was already decided at seq {existing.seq}")
        self.existing = existing


class ContentionError(Exception):
    """Every retry of an append lost the race; the subscriber's policy retries the record."""


class OverRelease(ValueError):  # noqa: N818 - names the inconsistency, like ValueError does
    """A cancel would release more seats than the resource reserves.

    On a state that includes the booking's decision this means the booking's seats were
    released already (its cancel is recorded), or else that the ledger is corrupt: the caller
    tells the two apart by looking the cancel's op_key up.
    """
