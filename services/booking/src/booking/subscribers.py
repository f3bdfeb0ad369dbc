"""The Kafka entrypoint: one subscriber on the commands topic, under the shared error policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker

from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from shared.events import COMMAND_TYPES, Message
from shared.kafka import subscribe


def register_subscribers(
    broker: KafkaBroker,
    settings: BookingSettings,
    handler: Callable[[Message], Awaitable[None]],
    metrics: BookingMetrics,
) -> None:
    subscribe(
        broker,
        settings.topics.commands,
        handler,
        group_id=settings.topics.group(settings.group_id),
        known_types=COMMAND_TYPES,
        dead_letter_topic=settings.topics.dlq,
        policy=settings.retry_policy,
        metrics=metrics.policy,
        auto_offset_reset=settings.auto_offset_reset,
        title="booking-commands",
        description="Decides CreateResource, RequestBooking and CancelBooking commands.",
    )
