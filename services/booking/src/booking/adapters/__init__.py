"""Adapters: the ledger store and the event publisher, each behind a Protocol."""

from booking.adapters.ledger import LedgerRepository, MongoLedgerRepository
from booking.adapters.publisher import EventPublisher, KafkaEventPublisher

__all__ = ["EventPublisher", "KafkaEventPublisher", "LedgerRepository", "MongoLedgerRepository"]
