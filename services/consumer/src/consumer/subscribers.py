"""The Kafka entrypoint: one subscriber on the events topic, under the shared error policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import DefaultSubscriber

from consumer.config import ConsumerSettings
from shared.events import EVENT_TYPES, Message
from shared.kafka import subscribe
from shared.messaging import PolicyMetrics, RetryPolicy

Handle = Callable[[Message], Awaitable[None]]


def subscribe_events(
    broker: KafkaBroker,
    settings: ConsumerSettings,
    handle: Handle,
    *,
    policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable dataclass
    metrics: PolicyMetrics | None = None,
) -> DefaultSubscriber:
    """Register the events subscriber on ``broker``; returns it (its consumer gives the lag)."""
    return subscribe(
        broker,
        settings.topics.events,
        handle,
        group_id=settings.topics.group(settings.group_id),
        known_types=EVENT_TYPES,
        dead_letter_topic=settings.topics.dlq,
        policy=policy,
        metrics=metrics,
        # A new read side must see every resource and booking ever decided.
        auto_offset_reset="earliest",
        title="consumer-events",
        description="Projects booking events into the views the gateway reads.",
    )
