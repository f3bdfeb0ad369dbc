"""The Kafka entrypoint: one subscriber on ``bookify.events``, thin by design.

Record in -> :func:`shared.messaging.process_record` (decode, retry, dead-letter) -> handler.

Ack policy: ``AckPolicy.NACK_ON_ERROR`` with auto-commit off. The offset is committed
only after ``process_record`` returns, i.e. after the views were updated or the record
was dead-lettered; if the process dies first, the record is delivered again and the
idempotent handler makes that harmless (at-least-once).

FastStream's own parsing and decoding are bypassed on purpose: a failure there happens
before our policy runs, so it would nack the record and redeliver it forever. The
envelope is decoded by ``shared.events.decode``, which turns every bad record into a
dead letter instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from faststream.message import StreamMessage

from consumer.config import ConsumerSettings
from shared.events import EVENT_TYPES, Message
from shared.messaging import DeadLetters, Record, RetryPolicy, process_record

Handle = Callable[[Message], Awaitable[None]]

DEFAULT_POLICY = RetryPolicy()


def subscribe_events(
    broker: KafkaBroker,
    settings: ConsumerSettings,
    handle: Handle,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_dead_letter: Callable[[BaseException], None] | None = None,
) -> DefaultSubscriber:
    """Register the events subscriber on ``broker``; returns it (its consumer gives the lag)."""

    async def publish(
        value: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]
    ) -> None:
        await broker.publish(value, topic=topic, key=key, headers=headers)

    dead_letters = DeadLetters(publish, settings.topics.dlq)

    subscriber = broker.subscriber(
        settings.topics.events,
        group_id=settings.group_id,
        # A new read side must see every resource and booking ever decided.
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_tolerant_parser,
        decoder=_undecoded,
        title="consumer.events",
        description="Projects booking events into the views the gateway reads.",
    )

    @subscriber
    async def on_event(body: bytes, message: KafkaMessage) -> None:
        await process_record(
            to_record(message.raw_message),
            handle,
            known_types=EVENT_TYPES,
            dead_letters=dead_letters,
            policy=policy,
            on_dead_letter=on_dead_letter,
        )

    return subscriber


def to_record(raw: ConsumerRecord) -> Record:
    """The client-independent record the error policy works on (headers kept as bytes)."""
    return Record(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        value=raw.value,
        headers=tuple(raw.headers),
    )


async def _undecoded(message: StreamMessage[Any]) -> bytes:
    body: bytes = message.body
    return body


async def _tolerant_parser(
    raw: ConsumerRecord, original: Callable[[ConsumerRecord], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's parser, except that non-UTF-8 header bytes cannot make a record poison."""
    try:
        return await original(raw)
    except UnicodeDecodeError:
        clean = dataclasses.replace(
            raw, headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in raw.headers]
        )
        message = await original(clean)
        message.raw_message = raw  # dead letters keep the original bytes
        return message
