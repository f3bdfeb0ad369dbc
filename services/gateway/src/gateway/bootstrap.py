"""The composition root: which adapter backs which port (the gateway only publishes and reads).

Wired like every Bookify service (see :mod:`shared.service`): ``bootstrap`` builds the
runtime; the app's lifespan connects :class:`GatewayDeps` (or takes ``overrides``, fakes in
unit tests). Kafka down at start-up does not stop the gateway: it starts, /readyz says 503,
writes answer 503, and the next publish or probe reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from gateway.adapters import (
    GroupCommit,
    KafkaCommandPublisher,
    KafkaEventFeed,
    MongoAcceptedStore,
    MongoIdempotencyStore,
    MongoViewReader,
)
from gateway.config import GatewaySettings
from gateway.hub import Hub, HubMetrics
from gateway.known import KnownIds
from gateway.middleware import HttpMetrics
from gateway.ports import (
    AcceptedStore,
    CommandPublisher,
    EventFeed,
    IdempotencyStore,
    ViewReader,
)
from shared.events import utcnow
from shared.kafka import (
    TopicMismatchError,
    client_options,
    ensure_topics,
    kafka_refusal,
    make_broker,
)
from shared.logging import get_logger
from shared.mongo import Document
from shared.retention import bounded
from shared.service import ReadinessCheck, ServiceRuntime, mongo_ping

log = get_logger(__name__)

KNOWN_RESOURCES = 50_000  # ids remembered, about 10 MB


@dataclass
class GatewayDeps:
    """Everything the use cases touch. ``create_app(deps=...)`` injects fakes in unit tests."""

    publisher: CommandPublisher
    views: ViewReader
    accepted: AcceptedStore
    idempotency: IdempotencyStore
    readiness: dict[str, ReadinessCheck]
    feed: EventFeed  # started by the lifespan, into ``hub``
    hub: Hub = field(default_factory=Hub)
    clock: Callable[[], datetime] = utcnow
    idempotency_wait_seconds: float = 2.0
    idempotency_poll_seconds: float = 0.05
    known_resources: KnownIds = field(default_factory=lambda: KnownIds(KNOWN_RESOURCES))


GatewayRuntime = ServiceRuntime[GatewaySettings, GatewayDeps, HttpMetrics]


async def _ensure_topics(settings: GatewaySettings) -> None:
    try:
        async with asyncio.timeout(settings.kafka_connect_timeout_seconds):
            await ensure_topics(settings)
    except TopicMismatchError:
        raise  # topics the settings do not want: fail start-up, saying what differs
    except Exception as exc:  # Kafka going away again must not block start-up
        log.warning("could not ensure topics", error=f"{type(exc).__name__}: {exc}")


def command_publisher(runtime: GatewayRuntime) -> KafkaCommandPublisher:
    """The commands' publisher on the runtime's broker; its first connect checks the topics."""
    settings = runtime.settings
    return KafkaCommandPublisher(
        runtime.broker,
        topic=settings.topics.commands,
        source=settings.ce_source,
        publish_timeout=settings.publish_timeout_seconds,
        connect_timeout=settings.kafka_connect_timeout_seconds,
        client_options=client_options(settings),
        diagnose=partial(kafka_refusal, settings),
        on_connect=partial(_ensure_topics, settings),
    )


def build_hub(settings: GatewaySettings, metrics: HubMetrics) -> Hub:
    return Hub(
        max_streams=settings.push_max_streams,
        max_streams_per_principal=settings.push_max_streams_per_principal,
        buffer_size=settings.push_buffer_size,
        recent_max=settings.push_recent_max,
        metrics=metrics,
    )


@asynccontextmanager
async def connect(
    runtime: GatewayRuntime, mongo: AsyncMongoClient[Document]
) -> AsyncIterator[GatewayDeps]:
    settings = runtime.settings
    publisher = command_publisher(runtime)
    group = GroupCommit(settings.group_commit_max_docs, settings.group_commit_delay_seconds)
    accepted = MongoAcceptedStore(mongo[settings.db_name], group)
    idempotency = MongoIdempotencyStore(mongo[settings.db_name], group)
    retained = [store.retained(settings.retention_seconds) for store in (accepted, idempotency)]
    push_metrics = HubMetrics(runtime.registry)
    hub = build_hub(settings, push_metrics)
    # A broker of its own (no subscriber, no metrics of its own): connecting it never
    # disturbs the publisher's.
    feed = KafkaEventFeed(
        make_broker(settings, registry=CollectorRegistry()),
        topic=settings.topics.events,
        replay_seconds=settings.push_replay_seconds,
        lag=push_metrics.feed_lag,
    )
    try:
        if not await publisher.connect():
            log.warning("starting without Kafka", servers=settings.kafka_bootstrap_servers)
        await feed.start(hub.publish_event)
        async with bounded(retained, interval=settings.retention_sweep_seconds):
            yield GatewayDeps(
                publisher=publisher,
                views=MongoViewReader(mongo[settings.views_db]),
                accepted=accepted,
                idempotency=idempotency,
                # The publisher's ping reconnects, so /readyz heals once Kafka is back; half
                # the probe's time, so that a frozen Kafka reads as an outage, not a timeout.
                readiness={
                    "mongodb": partial(mongo_ping, mongo),
                    "kafka": partial(publisher.ready, settings.readiness_timeout_seconds / 2),
                },
                idempotency_wait_seconds=settings.idempotency_wait_seconds,
                known_resources=KnownIds(settings.known_resources_max),
                feed=feed,
                hub=hub,
            )
    finally:
        hub.close()  # every open stream ends, telling its client to reconnect
        await feed.close()
        # Inserts still waiting for their group commit go out while the client is open.
        await accepted.close()
        await idempotency.close()
        await publisher.close()


def bootstrap(
    settings: GatewaySettings | None = None,
    *,
    overrides: GatewayDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> GatewayRuntime:
    """Build the service. Nothing connects here: the lifespan does (``runtime.running()``)."""
    return GatewayRuntime(
        settings or GatewaySettings(),
        metrics=HttpMetrics,
        connect=connect,
        overrides=overrides,
        tracer_provider=tracer_provider,
    )
