"""Kafka through FastStream: the broker factory, topic creation, and the one way to subscribe."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.events import Message
from shared.faults import FaultSwitch
from shared.kafka_security import kafka_client_options, refusal, refusal_of
from shared.logging import get_logger
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

log = get_logger(__name__)

PRODUCER_BATCH_BYTES = 256 * 1024

# On stop (SIGTERM), a subscriber stops fetching, waits up to this long for the batch in hand
# to be handled and its offsets committed, then its consumer leaves the group, so the next
# owner starts where it ended and the group rebalances at once. The chart's
# terminationGracePeriodSeconds for booking and the consumer covers it.
BATCH_FINISH_SECONDS = 15.0


def make_broker(
    settings: ServiceSettings,
    *,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider | None = None,
) -> KafkaBroker:
    """A FastStream broker whose publisher waits for every in-sync replica (acks=all)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=settings.kafka.broker_security(),
        acks="all",
        enable_idempotence=True,
        client_id=settings.service_name,
        request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000),
        # A hot resource's records all go to one partition, sent one batch at a time: larger
        # batches carry it several times faster (see docs/PERFORMANCE.md#kafka-producer-batches).
        max_batch_size=PRODUCER_BATCH_BYTES,
        graceful_timeout=BATCH_FINISH_SECONDS,
        middlewares=kafka_middlewares(registry, tracer_provider, settings.service_name),
        # FastStream's own logger prints coloured lines to stdout; route it through the
        # stdlib (and so our JSON handler), with its per-message lines at DEBUG.
        logger=logging.getLogger(f"faststream.{settings.service_name}"),
        log_level=logging.DEBUG,
    )


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """What every aiokafka client of this service is built with: servers, id, security."""
    return {
        "client_id": settings.service_name,
        **kafka_client_options(settings.kafka_bootstrap_servers, settings.kafka),
    }


def make_admin(settings: ServiceSettings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client of the settings' cluster, with their security."""
    return AIOKafkaAdminClient(**client_options(settings), **options)


def make_producer(settings: ServiceSettings, **options: Any) -> AIOKafkaProducer:
    """A producer of the settings' cluster, with their security (``options``: aiokafka's)."""
    return AIOKafkaProducer(**client_options(settings), **options)


def make_consumer(settings: ServiceSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` on the settings' cluster, with their security."""
    return AIOKafkaConsumer(*topics, **client_options(settings), **options)


async def kafka_refusal(settings: ServiceSettings, exc: BaseException) -> str | None:
    """Why the cluster refuses this service, if ``exc`` is a refusal rather than an outage.

    aiokafka's "Unable to bootstrap" hides the TLS or SASL error behind it: connect once
    more to find out (:func:`shared.kafka_security.refusal`).
    """
    refused = refusal_of(exc, settings.kafka)
    if refused is None and isinstance(exc, KafkaConnectionError):
        refused = await refusal(settings.kafka_bootstrap_servers, settings.kafka)
    return refused


class TopicMismatchError(RuntimeError):
    """The broker's topics are not the ones the settings want: a start-up error, not a retry."""


@dataclasses.dataclass(frozen=True)
class TopicState:
    """What the broker says of one topic."""

    name: str
    partitions: int
    replicas: int
    min_insync_replicas: int | None


# Metadata for a topic created a moment ago may not have reached the broker that answers.
NOT_PROPAGATED_YET = (UnknownTopicOrPartitionError.errno, LeaderNotAvailableError.errno)


async def ensure_topics(settings: ServiceSettings) -> None:
    """Create the platform's topics where missing, then check every one against the settings.

    With ``create_topics`` off (a cluster whose operator creates topics: Strimzi
    ``KafkaTopic``, Terraform) nothing is created and a missing topic is an error. A topic
    the broker refused to create (replication factor above its brokers, no CREATE ACL) is an
    error naming the broker's reason: the producer would otherwise have the broker
    auto-create a one-partition topic. An existing topic with fewer partitions or replicas,
    or a lower ``min.insync.replicas``, than the settings want is an error saying what
    differs; more of them is a warning.
    """
    admin = make_admin(settings)
    await admin.start()
    try:
        wanted = settings.topics.all()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing and not settings.create_topics:
            raise TopicMismatchError(
                f"topics missing on {settings.kafka_bootstrap_servers}: {', '.join(missing)} "
                "(or this service may not DESCRIBE them); create_topics is off, so create "
                f"them ({wanted_shape(settings)}) or set create_topics=true"
            )
        if missing:
            response = await admin.create_topics([new_topic(settings, t) for t in missing])
            refused = creation_failures(response.topic_errors)
            if refused:
                raise TopicMismatchError(
                    f"could not create {'; '.join(refused)} ({wanted_shape(settings)})"
                )
        states = await describe_topics(admin, wanted)
    finally:
        await admin.close()
    errors, warnings = compare_topics(states, settings)
    for warning in warnings:
        log.warning("topic_differs", detail=warning)
    if errors:
        raise TopicMismatchError("; ".join(errors))


def wanted_shape(settings: ServiceSettings) -> str:
    min_insync = settings.topic_min_insync_replicas
    return (
        f"partitions={settings.topic_partitions}, "
        f"replication factor={settings.topic_replication_factor}"
        + ("" if min_insync is None else f", min.insync.replicas={min_insync}")
    )


def creation_failures(topic_errors: Sequence[tuple[Any, ...]]) -> list[str]:
    """``topic: REASON (broker's message)`` of each topic the broker did not create.

    TOPIC_ALREADY_EXISTS is not a failure: another service created it first.
    """
    failures = []
    for topic, code, *message in topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        error = for_code(code)
        detail = message[0] if message and message[0] else error.description
        failures.append(f"{topic}: {error.message} ({detail})")
    return failures


async def describe_topics(
    admin: AIOKafkaAdminClient, topics: Sequence[str], *, within: float = 10.0
) -> list[TopicState]:
    """Partitions and replicas (metadata) and ``min.insync.replicas`` (configs) of ``topics``.

    Only topics known to exist: a metadata request for a missing one may auto-create it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        described = await admin.describe_topics(list(topics))
        pending = [t for t in described if t["error_code"] in NOT_PROPAGATED_YET]
        if not pending or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    configs = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )
    min_insync: dict[str, int | None] = {}
    for response in configs:
        for code, message, _type, name, entries, *_ in response.resources:
            if code != 0:
                error = for_code(code)
                raise TopicMismatchError(
                    f"could not read the configs of {name}: {error.message} ({message})"
                )
            values = {entry[0]: entry[1] for entry in entries}
            value = values.get("min.insync.replicas")
            min_insync[name] = int(value) if value is not None else None
    states = []
    for topic in described:
        if topic["error_code"] != 0:
            error = for_code(topic["error_code"])
            raise TopicMismatchError(f"could not describe {topic['topic']}: {error.message}")
        partitions = topic["partitions"]
        states.append(
            TopicState(
                name=topic["topic"],
                partitions=len(partitions),
                replicas=min((len(p["replicas"]) for p in partitions), default=0),
                min_insync_replicas=min_insync.get(topic["topic"]),
            )
        )
    return states


def compare_topics(
    states: Sequence[TopicState], settings: ServiceSettings
) -> tuple[list[str], list[str]]:
    """(errors, warnings): what differs between the broker's topics and the settings.

    Fewer partitions than wanted caps the consumers that get work; fewer replicas, or a lower
    ``min.insync.replicas``, weakens what acks=all promises: errors. More partitions or
    replicas cost only resources: warnings. A ``min.insync.replicas`` above the replicas
    fails every acks=all send: an error whatever the settings.
    """
    errors: list[str] = []
    warnings: list[str] = []
    wanted_insync = settings.topic_min_insync_replicas
    for topic in states:
        counts = (
            ("partitions", topic.partitions, "topic_partitions", settings.topic_partitions),
            (
                "replicas",
                topic.replicas,
                "topic_replication_factor",
                settings.topic_replication_factor,
            ),
        )
        for what, count, setting, wanted in counts:
            if count < wanted:
                errors.append(f"{topic.name} has {count} {what}, {setting} wants {wanted}")
            elif count > wanted:
                warnings.append(f"{topic.name} has {count} {what}, {setting} says {wanted}")
        actual = topic.min_insync_replicas
        if actual is not None and actual > topic.replicas:
            errors.append(
                f"{topic.name} has min.insync.replicas={actual} but {topic.replicas} replicas: "
                "every acks=all send would fail"
            )
        elif wanted_insync is not None and actual is not None and actual < wanted_insync:
            errors.append(
                f"{topic.name} has min.insync.replicas={actual}, "
                f"topic_min_insync_replicas wants {wanted_insync}"
            )
        elif wanted_insync is not None and actual is not None and actual > wanted_insync:
            warnings.append(
                f"{topic.name} has min.insync.replicas={actual}, "
                f"topic_min_insync_replicas says {wanted_insync}"
            )
    return errors, warnings


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
