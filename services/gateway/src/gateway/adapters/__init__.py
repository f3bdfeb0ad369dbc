"""The real adapters behind gateway.ports: MongoDB (``mongo``) and Kafka (``kafka``)."""

from gateway.adapters.feed import KafkaEventFeed
from gateway.adapters.group_commit import GroupCommit, GroupInserter
from gateway.adapters.kafka import KafkaCommandPublisher
from gateway.adapters.mongo import (
    MongoAcceptedStore,
    MongoIdempotencyStore,
    MongoViewReader,
    safe_document,
)

__all__ = [
    "GroupCommit",
    "GroupInserter",
    "KafkaCommandPublisher",
    "KafkaEventFeed",
    "MongoAcceptedStore",
    "MongoIdempotencyStore",
    "MongoViewReader",
    "safe_document",
]
