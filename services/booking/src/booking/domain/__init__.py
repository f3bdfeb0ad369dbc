"""The booking write model: resource ledger state and decisions. No I/O here."""

from booking.domain.errors import (
    AlreadyDecided,
    ConcurrencyConflict,
    ContentionError,
    OverRelease,
)
from booking.domain.model import (
    EVENT_NAMESPACE,
    Decision,
    EntryKind,
    LedgerEntry,
    ResourceState,
    cancel_booking,
    cancel_key,
    create_key,
    create_resource,
    decide,
    decide_key,
    event_for,
    event_id_for,
    op_key_for,
    replay,
    request_booking,
)

__all__ = [
    "EVENT_NAMESPACE",
    "AlreadyDecided",
    "ConcurrencyConflict",
    "ContentionError",
    "Decision",
    "EntryKind",
    "LedgerEntry",
    "OverRelease",
    "ResourceState",
    "cancel_booking",
    "cancel_key",
    "create_key",
    "create_resource",
    "decide",
    "decide_key",
    "event_for",
    "event_id_for",
    "op_key_for",
    "replay",
    "request_booking",
]
