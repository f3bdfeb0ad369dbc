"""The read side's port to the views store; the Kafka consumer's lag is sampled by
:mod:`consumer.adapters.kafka_lag`, imported from there."""

from consumer.adapters.repository import ViewRepository

__all__ = ["ViewRepository"]
