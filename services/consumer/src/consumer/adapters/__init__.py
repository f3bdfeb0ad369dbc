"""The read side's ports to the outside world: the views store and the Kafka consumer's lag."""

from consumer.adapters.repository import ViewRepository

__all__ = ["ViewRepository"]
