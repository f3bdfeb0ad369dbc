"""Kafka through FastStream: the broker factory, topic creation, and the one way to subscribe."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.events import Message
from shared.faults import FaultSwitch
from shared.messaging import (
    DeadLetters,
    PolicyMetrics,
    Publish,
    Record,
    RetryPolicy,
    process_record,
)
from shared.settings import ServiceSettings, SubscriberSettings
from shared.telemetry import kafka_middlewares


def make_broker(
    settings: ServiceSettings,
    *,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider | None = None,
) -> KafkaBroker:
    """A FastStream broker whose publisher waits for every in-sync replica (acks=all)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id=settings.service_name,
        request_timeout_ms=10_000,
        middlewares=kafka_middlewares(registry, tracer_provider, settings.service_name),
        # FastStream's own logger prints coloured lines to stdout; route it through the
        # stdlib (and so our JSON handler), with its per-message lines at DEBUG.
        logger=logging.getLogger(f"faststream.{settings.service_name}"),
        log_level=logging.DEBUG,
    )


async def ensure_topics(settings: ServiceSettings) -> None:
    """Create the platform's topics if missing (all partitions keyed by resource_id)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in settings.topics.all() if t not in existing]
        if missing:
            # Another service may create them first; that is the outcome we want.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, settings.topic_partitions, 1) for t in missing]
                )
    finally:
        await admin.close()


def subscribe(
    broker: KafkaBroker,
    settings: SubscriberSettings,
    topic: str,
    handle: Callable[[Message], Awaitable[None]],
    *,
    known_types: Mapping[str, type[Message]],
    metrics: PolicyMetrics,
    faults: FaultSwitch,
    title: str,
    description: str,
) -> DefaultSubscriber:
    """Subscribe ``handle`` to ``topic`` under the error policy of :mod:`shared.messaging`.

    The consumer group, offset reset and retry policy come from ``settings``; the DLQ is the
    settings' ``topics.dlq``. Injected faults (``faults``, off unless switched on in dev or
    test) run before ``handle`` on every attempt, so they are retried like real failures.

    Ack policy: ``NACK_ON_ERROR`` with auto-commit off, so an offset is committed only after
    ``process_record`` returned (handled, or dead-lettered); if even the dead-letter publish
    fails, the record is nacked (the consumer seeks back) and comes again: at-least-once.

    FastStream's JSON decoding is bypassed and its header parsing made lenient on purpose: a
    failure there happens before our policy runs and would nack a poison record forever.
    """
    dead_letters = DeadLetters(publish_through(broker), settings.topics.dlq)
    policy = RetryPolicy(
        attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )
    faulty_handle = faults.wrap(handle)
    subscriber = broker.subscriber(
        topic,
        group_id=settings.group,
        auto_offset_reset=settings.auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=parse_leniently,
        decoder=raw_body,
        title=title,
        description=description,
    )

    @subscriber
    async def on_record(_: bytes, message: KafkaMessage) -> None:
        await process_record(
            to_record(message.raw_message),
            faulty_handle,
            known_types=known_types,
            dead_letters=dead_letters,
            policy=policy,
            metrics=metrics,
        )

    return subscriber


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

    A parser error would nack the record forever; a poison record must reach the handler so
    process_record can dead-letter it. The original record is kept for the dead letter.
    """
    try:
        return await original(raw)
    except (UnicodeDecodeError, AttributeError):
        message = await original(dataclasses.replace(raw, headers=readable_headers(raw.headers)))
        message.raw_message = raw
        return message


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """Skip FastStream's JSON decoding: shared.events.decode validates the bytes itself."""
    body: bytes = message.body
    return body
