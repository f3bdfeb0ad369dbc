"""The gateway's own reading of bookify.events (gateway.adapters.feed) on the real Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Histogram

from gateway.adapters.feed import KafkaEventFeed
from gateway.config import GatewaySettings
from shared.events import BookingConfirmed, Event, encode
from shared.kafka import ensure_topics, make_broker

WAIT = 60.0  # a fail-safe for an event that never comes


def confirmed(principal: str = "alice") -> BookingConfirmed:
    now = datetime.now(UTC)
    return BookingConfirmed(
        event_id=uuid4(), command_id=uuid4(), resource_id=uuid4(), accepted_at=now,
        occurred_at=now, booking_id=uuid4(), principal=principal, quantity=1,
        available=3, version=2,
    )  # fmt: skip


@pytest.fixture
async def producer(gateway_settings: GatewaySettings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(gateway_settings)
    producer = AIOKafkaProducer(bootstrap_servers=gateway_settings.kafka_bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def send(
    producer: AIOKafkaProducer, topic: str, event: Event, *, timestamp_ms: int | None = None
) -> None:
    value, headers = encode(event, source="test")
    await producer.send_and_wait(
        topic,
        value,
        key=str(event.partition_key).encode(),
        headers=[(k, v.encode()) for k, v in headers.items()],
        timestamp_ms=timestamp_ms,
    )


def feed_of(
    settings: GatewaySettings, replay_seconds: float, lag: Histogram | None = None
) -> KafkaEventFeed:
    broker = make_broker(settings, registry=CollectorRegistry())
    return KafkaEventFeed(
        broker, topic=settings.topics.events, replay_seconds=replay_seconds, lag=lag
    )


def lag_histogram() -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("lag_seconds", "lag", buckets=(0.1, 60.0), registry=registry), registry


async def test_each_event_reaches_the_feed_from_every_partition(
    gateway_settings: GatewaySettings, producer: AIOKafkaProducer
) -> None:
    topic = gateway_settings.topics.events
    received: asyncio.Queue[Event] = asyncio.Queue()
    lag, registry = lag_histogram()
    feed = feed_of(gateway_settings, replay_seconds=0, lag=lag)
    await feed.start(received.put_nowait)
    try:
        async with asyncio.timeout(WAIT):
            await feed.positioned.wait()
        events = [confirmed() for _ in range(12)]  # random resources: every partition
        for event in events:
            await send(producer, topic, event)
        await producer.send_and_wait(topic, b"not an event")  # skipped, not fatal
        last = confirmed()
        await send(producer, topic, last)
        got = []
        async with asyncio.timeout(WAIT):
            while len(got) < len(events) + 1:
                got.append(await received.get())
    finally:
        await feed.close()
    assert {e.event_id for e in got} == {e.event_id for e in [*events, last]}
    # Each event's lag, none for what was not an event; all within the fail-safe's wait.
    assert registry.get_sample_value("lag_seconds_count") == len(events) + 1
    assert registry.get_sample_value("lag_seconds_bucket", {"le": "60.0"}) == len(events) + 1


async def test_a_feed_started_later_replays_the_recent_past_and_not_before(
    gateway_settings: GatewaySettings, producer: AIOKafkaProducer
) -> None:
    topic = gateway_settings.topics.events
    old, recent, after = confirmed(), confirmed(), confirmed()
    ten_minutes_ago = int((time.time() - 600) * 1000)
    await send(producer, topic, old, timestamp_ms=ten_minutes_ago)
    await send(producer, topic, recent)
    received: asyncio.Queue[Event] = asyncio.Queue()
    lag, registry = lag_histogram()
    feed = feed_of(gateway_settings, replay_seconds=120, lag=lag)
    await feed.start(received.put_nowait)
    try:
        got = []
        async with asyncio.timeout(WAIT):
            got.append(await received.get())
            await send(producer, topic, after)  # had the old one been replayed, it came first
            got.append(await received.get())
    finally:
        await feed.close()
    assert [e.event_id for e in got] == [recent.event_id, after.event_id]
    assert registry.get_sample_value("lag_seconds_count") == 1  # the live one, not the replayed
