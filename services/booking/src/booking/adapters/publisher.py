"""Publishing events to Kafka as CloudEvents (binary mode) through the FastStream broker."""

from __future__ import annotations

from typing import Protocol

from faststream.kafka import KafkaBroker

from shared.events import Event, encode

SOURCE = "bookify/booking"


class EventPublisher(Protocol):
    async def publish(self, event: Event) -> None:
        """Return once Kafka acknowledged the event (acks=all)."""
        ...


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self._broker = broker
        self._topic = topic

    async def publish(self, event: Event) -> None:
        value, headers = encode(event, source=SOURCE)
        # Keyed by resource so one resource's events stay ordered on one partition.
        await self._broker.publish(
            value, topic=self._topic, key=str(event.partition_key).encode(), headers=headers
        )
