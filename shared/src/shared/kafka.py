"""Kafka client factories: one broker per process, topics created idempotently."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.settings import ServiceSettings
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
