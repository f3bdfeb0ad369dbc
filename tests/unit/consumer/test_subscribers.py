"""The Kafka entrypoint wired on FastStream's in-memory TestKafkaBroker, views faked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from consumer.bootstrap import ConsumerDeps, ConsumerRuntime, bootstrap
from consumer.config import ConsumerSettings
from consumer.domain import BookingStatus
from consumer.metrics import ConsumerMetrics
from shared.events import EVENT_TYPES, CreateResource, Message, encode
from shared.faults import FaultSwitch
from shared.kafka import subscribe
from tests.unit.consumer.fakes import Events, FakeViewRepository, sample


def fast_settings() -> ConsumerSettings:
    return ConsumerSettings(
        topic_prefix=f"unit-{uuid4().hex[:8]}.",
        retry_attempts=2,
        retry_base_delay=0.0,
        retry_max_delay=0.0,
    )


@dataclass
class DeadLetterBox:
    records: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)


@dataclass
class Wired:
    broker: KafkaBroker
    settings: ConsumerSettings
    dlq: DeadLetterBox
    metrics: ConsumerMetrics

    async def publish(self, value: bytes, headers: dict[str, str]) -> None:
        await self.broker.publish(
            value, topic=self.settings.topics.events, key=b"k", headers=headers
        )


async def _raw(message: StreamMessage[Any]) -> bytes:
    body: bytes = message.body
    return body


@pytest.fixture
async def wired(views: FakeViewRepository) -> AsyncIterator[Wired]:
    settings = fast_settings()
    runtime: ConsumerRuntime = bootstrap(settings, overrides=ConsumerDeps(views=views))
    box = DeadLetterBox()

    @runtime.broker.subscriber(settings.topics.dlq, decoder=_raw)
    async def capture(body: bytes, message: KafkaMessage) -> None:
        box.records.append((body, message.headers))

    async with TestKafkaBroker(runtime.broker), runtime.running():
        yield Wired(runtime.broker, settings, box, runtime.metrics)


async def test_event_on_the_topic_updates_the_views(
    wired: Wired, views: FakeViewRepository, events: Events
) -> None:
    booking_id = uuid4()

    for event in (events.created(capacity=10, version=1), events.confirmed(booking_id)):
        await wired.publish(*encode(event, source="test"))

    assert views.bookings[str(booking_id)].status is BookingStatus.CONFIRMED
    assert views.resources[str(events.resource_id)].available == 8
    assert wired.dlq.records == []


@pytest.mark.parametrize(
    ("value", "headers", "why"),
    [
        (
            b"{not json",
            {"ce_specversion": "1.0", "ce_type": "bookify.booking.confirmed.v1"},
            "invalid",
        ),
        (b"{}", {"ce_type": "bookify.booking.confirmed.v1"}, "CloudEvents"),
        (b"{}", {"ce_specversion": "1.0", "ce_type": "bookify.nope.v1"}, "unknown ce_type"),
    ],
)
async def test_malformed_record_goes_to_the_dlq_with_why_and_where_from(
    wired: Wired,
    views: FakeViewRepository,
    value: bytes,
    headers: dict[str, str],
    why: str,
) -> None:
    await wired.publish(value, {**headers, "content-type": "application/json"})

    [(body, dlq_headers)] = wired.dlq.records
    assert body == value
    assert dlq_headers["dlq_error_type"] == "MalformedMessageError"
    assert why in dlq_headers["dlq_error_message"]
    assert dlq_headers["dlq_source_topic"] == wired.settings.topics.events
    assert views.processed == {}
    assert sample(wired.metrics, "bookify_dlq_messages_total", {"service": "consumer"}) == 1


async def test_a_command_on_the_events_topic_is_dead_lettered_not_applied(
    wired: Wired, views: FakeViewRepository
) -> None:
    command = CreateResource(
        command_id=uuid4(),
        principal="admin",
        accepted_at=Events().accepted_at,
        resource_id=uuid4(),
        name="Hall",
        capacity=3,
    )

    await wired.publish(*encode(command, source="test"))

    [(_, dlq_headers)] = wired.dlq.records
    assert "unknown ce_type" in dlq_headers["dlq_error_message"]
    assert views.resources == {}


async def test_handler_that_keeps_failing_is_dead_lettered_after_the_retries(
    views: FakeViewRepository, metrics: ConsumerMetrics, events: Events
) -> None:
    settings = fast_settings()
    broker = KafkaBroker()
    calls: list[Message] = []

    async def broken(message: Message) -> None:
        calls.append(message)
        raise ValueError("bug in a projection")

    subscribe(
        broker,
        settings,
        settings.topics.events,
        broken,
        known_types=EVENT_TYPES,
        metrics=metrics.policy,
        faults=FaultSwitch("test"),
        title="broken",
        description="a projection that always fails",
    )
    box = DeadLetterBox()

    @broker.subscriber(settings.topics.dlq, decoder=_raw)
    async def capture(body: bytes, message: KafkaMessage) -> None:
        box.records.append((body, message.headers))

    value, headers = encode(events.created(), source="test")
    async with TestKafkaBroker(broker):
        await broker.publish(value, topic=settings.topics.events, headers=headers)

    assert len(calls) == settings.retry_attempts
    [(_, dlq_headers)] = box.records
    assert dlq_headers["dlq_error_type"] == "ValueError"
    assert dlq_headers["dlq_error_message"] == "bug in a projection"
