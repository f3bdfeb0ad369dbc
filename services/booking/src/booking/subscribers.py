"""The Kafka entrypoint: one subscriber on the commands topic.

Thin on purpose: turn the Kafka record into a :class:`shared.messaging.Record` and hand it to
:func:`shared.messaging.process_record`, which decodes it, runs the handler with retries and
dead-letters what cannot be processed.

Error policy: ``AckPolicy.NACK_ON_ERROR`` with auto-commit off. The offset is committed only
after ``process_record`` returned (the command was decided, or dead-lettered); if even the
dead-letter publish fails, the record is nacked (the consumer seeks back) and comes again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler
from shared.events import COMMAND_TYPES
from shared.messaging import DeadLetters, Publish, Record, process_record


def register_subscribers(
    broker: KafkaBroker,
    settings: BookingSettings,
    handler: CommandHandler,
    metrics: BookingMetrics,
) -> None:
    dead_letters = DeadLetters(publish_through(broker), settings.topics.dlq)
    policy = settings.retry_policy

    @broker.subscriber(
        settings.topics.commands,
        group_id=settings.group_id,
        auto_offset_reset=settings.auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=parse_leniently,
        decoder=raw_body,
        title="booking-commands",
        description="Decides CreateResource, RequestBooking and CancelBooking commands.",
    )
    async def on_command(_: bytes, message: KafkaMessage) -> None:
        await process_record(
            to_record(message.raw_message),
            handler,
            known_types=COMMAND_TYPES,
            dead_letters=dead_letters,
            policy=policy,
            on_dead_letter=metrics.dead_lettered,
        )


def publish_through(broker: KafkaBroker) -> Publish:
    async def publish(
        value: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]
    ) -> None:
        await broker.publish(value, topic=topic, key=key, headers=headers)

    return publish


def to_record(raw: Any) -> Record:
    """The library-independent view of an aiokafka ``ConsumerRecord``."""
    return Record(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        value=raw.value,
        headers=readable_headers(raw.headers),
    )


def readable_headers(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """Header values as valid UTF-8 (undecodable bytes replaced, null values empty)."""
    return [(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in headers]


async def parse_leniently(
    raw: Any, original: Callable[[Any], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's parser, minus its failure on a non-UTF-8 or null header value.

    A parser error would nack the record forever; a poison record must reach our handler so
    process_record can dead-letter it.
    """
    try:
        return await original(raw)
    except (UnicodeDecodeError, AttributeError):
        return await original(dataclasses.replace(raw, headers=readable_headers(raw.headers)))


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """Skip FastStream's JSON decoding: shared.events.decode validates the bytes itself."""
    body: bytes = message.body
    return body
