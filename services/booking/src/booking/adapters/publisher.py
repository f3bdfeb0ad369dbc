"""Publishing events to Kafka as CloudEvents (binary mode) through the FastStream broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from faststream.kafka import KafkaBroker

from shared.events import Event, encode

SOURCE = "bookify/booking"


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self._broker = broker
        self._topic = topic

    async def publish(self, event: Event) -> None:
        await (await self.send(event))

    async def send(self, event: Event) -> Awaitable[Any]:
        value, headers = encode(event, source=SOURCE)
        # Keyed by resource so one resource's events stay ordered on one partition.
        ack: Awaitable[Any] | None = await self._broker.publish(
            value,
            topic=self._topic,
            key=str(event.partition_key).encode(),
            headers=headers,
            no_confirm=True,
        )
        # aiokafka's delivery future; FastStream's in-memory TestKafkaBroker delivers on the
        # spot and returns None instead.
        return ack if ack is not None else asyncio.sleep(0)
