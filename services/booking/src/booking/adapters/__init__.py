"""Adapters: the ledger store and the event publisher, each behind a Protocol."""

from booking.adapters.ledger import LedgerRepository, MongoLedgerRepository, entry_id
from booking.adapters.publisher import EventPublisher, KafkaEventPublisher

__all__ = [
    "EventPublisher",
    "KafkaEventPublisher",
    "LedgerRepository",
    "MongoLedgerRepository",
    "entry_id",
]
