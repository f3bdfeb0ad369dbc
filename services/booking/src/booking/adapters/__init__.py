"""Adapters: the ledger store and the event publisher, behind the Protocols of booking.ports."""

from booking.adapters.ledger import MongoLedgerRepository, entry_id
from booking.adapters.publisher import KafkaEventPublisher

__all__ = ["KafkaEventPublisher", "MongoLedgerRepository", "entry_id"]
