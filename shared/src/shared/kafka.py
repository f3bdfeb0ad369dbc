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
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.events import Message
from shared.faults import FaultSwitch
from shared.messaging import (
    BatchHandler,
    DeadLetters,
    Delivery,
    PolicyMetrics,
    Publish,
    Record,
    RetryPolicy,
    process_batch,
)
from shared.settings import ServiceSettings, SubscriberSettings
from shared.telemetry import kafka_middlewares

PRODUCER_BATCH_BYTES = 256 * 1024


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
        request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000),
        # A hot resource's records all go to one partition, sent one batch at a time: larger
        # batches carry it several times faster (see docs/PERFORMANCE.md#kafka-producer-batches).
        max_batch_size=PRODUCER_BATCH_BYTES,
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
                await admin.create_topics([new_topic(settings, t) for t in missing])
    finally:
        await admin.close()


def new_topic(settings: ServiceSettings, name: str) -> NewTopic:
    """A topic as the settings want it: acks=all waits for min.insync.replicas of them."""
    configs = {}
    if settings.topic_min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    return NewTopic(
        name,
        settings.topic_partitions,
        settings.topic_replication_factor,
        topic_configs=configs,
    )


def subscribe(
    broker: KafkaBroker,
    settings: SubscriberSettings,
    topic: str,
    handler: BatchHandler,
    *,
    known_types: Mapping[str, type[Message]],
    metrics: PolicyMetrics,
    faults: FaultSwitch,
    title: str,
    description: str,
) -> BatchSubscriber:
    """Subscribe ``handler`` to ``topic`` in batches, under the policy of :mod:`shared.messaging`.

    Each poll hands over what the partitions have ready, up to ``settings.batch_max_records``
    (waiting at most ``settings.batch_timeout_ms`` when nothing is), so a quiet topic costs no
    latency and a busy one is handled a batch at a time: one store write, publishes awaited
    together, one offset commit. The consumer group, offset reset and retry policy come from
    ``settings``; the DLQ is ``settings.topics.dlq``. Injected faults (``faults``, off unless
    switched on in dev or test) run before the handler on every attempt, for each message.

    Ack policy: ``NACK_ON_ERROR`` with auto-commit off, so offsets are committed only after
    ``process_batch`` returned (every record handled, or dead-lettered); if even a dead-letter
    publish fails, the batch is nacked (the consumer seeks back) and comes again:
    at-least-once.

    FastStream's JSON decoding is bypassed and its header parsing made lenient on purpose: a
    failure there happens before our policy runs and would nack a poison record forever.
    """
    dead_letters = DeadLetters(publish_through(broker), settings.topics.dlq)
    policy = RetryPolicy(
        attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )
    faulty = FaultyHandler(handler, faults)
    subscriber = broker.subscriber(
        topic,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        # aiokafka fetches a broker's partitions one request at a time: a held fetch of idle
        # partitions delays the hot one's (see docs/PERFORMANCE.md#kafka-fetch-wait).
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        group_id=settings.group,
        auto_offset_reset=settings.auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=parse_leniently,
        decoder=raw_body,
        title=title,
        description=description,
    )

    @subscriber
    async def on_batch(_: Any, message: KafkaMessage) -> None:
        await process_batch(
            [to_record(raw) for raw in message.raw_message],
            faulty,
            known_types=known_types,
            dead_letters=dead_letters,
            policy=policy,
            metrics=metrics,
        )

    return subscriber


class FaultyHandler:
    """``handler`` with the fault switch applied before it, keyed by each message's id."""

    def __init__(self, handler: BatchHandler, faults: FaultSwitch) -> None:
        self._handler = handler
        self._faults = faults

    async def __call__(self, message: Message) -> None:
        await self._faults.before_handling(str(message.message_id))
        await self._handler(message)

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            await self._faults.before_handling(str(delivery.message.message_id))
        await self._handler.many(deliveries)

    async def settle(self, message: Message, error: BaseException) -> None:
        # No fault here: faults stand for a message's own handling, not for the last resort.
        await self._handler.settle(message, error)


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
        readable = (
            tuple(dataclasses.replace(r, headers=readable_headers(r.headers)) for r in raw)
            if isinstance(raw, tuple)  # a batch
            else dataclasses.replace(raw, headers=readable_headers(raw.headers))
        )
        message = await original(readable)
        message.raw_message = raw
        return message


async def raw_body(message: StreamMessage[Any]) -> Any:
    """Skip FastStream's JSON decoding: shared.events.decode validates the bytes itself."""
    return message.body
