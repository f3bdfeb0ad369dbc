"""The booking app against the real Kafka broker and MongoDB-wire server.

The app runs through its ASGI lifespan exactly as uvicorn drives it (topics and indexes
ensured on start, the broker consuming with its consumer group); commands are produced with
a plain aiokafka producer, as the gateway would, and the outcome is read off the topics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from booking.app import create_app
from booking.bootstrap import BookingRuntime
from booking.config import BookingSettings
from shared.events import (
    EVENT_TYPES,
    BookingConfirmed,
    CreateResource,
    Message,
    RequestBooking,
    ResourceCreated,
    decode,
    encode,
)

pytestmark = pytest.mark.integration


@dataclass
class Running:
    runtime: BookingRuntime
    app: FastAPI
    bootstrap_servers: str

    @property
    def topics(self) -> Any:
        return self.runtime.settings.topics

    async def produce(
        self, value: bytes, headers: list[tuple[str, bytes]], key: bytes
    ) -> tuple[int, int]:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                self.topics.commands, value=value, key=key, headers=headers
            )
            return meta.partition, meta.offset
        finally:
            await producer.stop()

    async def send(self, message: Message) -> tuple[int, int]:
        value, headers = encode(message, source="test")
        return await self.produce(
            value,
            [(k, v.encode()) for k, v in headers.items()],
            key=str(message.partition_key).encode(),
        )

    async def wait_for(self, topic: str, matches: Callable[[Any], bool], within: float = 30) -> Any:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap_servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for record in batch:
                        if matches(record):
                            return record
            raise TimeoutError(f"no matching record on {topic} within {within} s")
        finally:
            await consumer.stop()


@pytest.fixture
async def running(
    kafka: Any, mongo: Any, mongo_db: Any, topic_factory: Any, unique_id: str
) -> AsyncIterator[Running]:
    # The fixture creates (and later deletes) the prefixed topics; the app finds them there.
    for name in ("bookify.commands", "bookify.events", "bookify.dlq"):
        await topic_factory(name, partitions=3)
    settings = BookingSettings(
        environment="test",
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        mongo_uri=mongo.uri,
        topic_prefix=f"{unique_id}-",
        db_name=mongo_db.name,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
    )
    # A real SDK provider (not exporting): spans exist, so their context is propagated.
    app = create_app(settings, tracer_provider=TracerProvider())
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield Running(app.state.runtime, app, kafka.bootstrap_servers)


def is_event(ce_type: str, **fields: Any) -> Callable[[Any], bool]:
    def matches(record: Any) -> bool:
        headers = dict(record.headers)
        if headers.get("ce_type") != ce_type.encode():
            return False
        event = decode(headers, record.value, EVENT_TYPES)
        return all(getattr(event, k) == v for k, v in fields.items())

    return matches


def commands(resource_id: UUID, capacity: int, quantity: int) -> tuple[Message, RequestBooking]:
    now = datetime.now(UTC)
    create = CreateResource(
        command_id=uuid4(),
        principal="admin",
        accepted_at=now,
        resource_id=resource_id,
        name="Hall",
        capacity=capacity,
    )
    book = RequestBooking(
        command_id=uuid4(),
        principal="alice",
        accepted_at=now,
        booking_id=uuid4(),
        resource_id=resource_id,
        quantity=quantity,
    )
    return create, book


async def test_a_booking_command_becomes_a_confirmed_event_on_the_events_topic(
    running: Running,
) -> None:
    rid = uuid4()
    create, book = commands(rid, capacity=5, quantity=2)
    await running.send(create)
    await running.send(book)

    record = await running.wait_for(
        running.topics.events, is_event(BookingConfirmed.ce_type, booking_id=book.booking_id)
    )

    event = decode(dict(record.headers), record.value, EVENT_TYPES)
    assert isinstance(event, BookingConfirmed)
    assert (event.available, event.version, event.command_id) == (3, 2, book.command_id)
    assert record.key == str(rid).encode()
    headers = dict(record.headers)
    assert headers["ce_source"] == b"bookify/booking"
    assert "traceparent" in headers  # trace context crosses the hop
    transport = httpx.ASGITransport(app=running.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://booking") as http:
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert ready.status_code == 200
    assert 'bookify_bookings_total{outcome="confirmed"} 1.0' in metrics


async def test_a_poison_record_is_dead_lettered_and_the_record_behind_it_is_processed(
    running: Running,
) -> None:
    rid = uuid4()
    key = str(rid).encode()
    poison_headers = [("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe not utf-8")]
    partition, poison_offset = await running.produce(b"\x00garbage", poison_headers, key=key)
    create, _ = commands(rid, capacity=3, quantity=1)
    same_partition, _ = await running.send(create)
    assert same_partition == partition  # keyed alike, so the good one waits behind the poison

    dead = await running.wait_for(running.topics.dlq, lambda r: r.key == key)
    created = await running.wait_for(
        running.topics.events, is_event(ResourceCreated.ce_type, resource_id=rid)
    )

    assert created is not None
    dlq = {k: v.decode() for k, v in dead.headers}
    assert dead.value == b"\x00garbage"
    assert dlq["dlq_error_type"] == "MalformedMessageError"
    assert dlq["dlq_source_topic"] == running.topics.commands
    assert (dlq["dlq_source_partition"], dlq["dlq_source_offset"]) == (
        str(partition),
        str(poison_offset),
    )
    # Both records are committed: the group moved past the poison.
    await wait_committed(
        running.bootstrap_servers,
        running.runtime.settings.group,
        TopicPartition(running.topics.commands, partition),
    )


async def wait_committed(
    bootstrap_servers: str, group: str, tp: TopicPartition, within: float = 30
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + within
        committed = None
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = offsets.get(tp)
            if committed is not None and committed.offset >= 2:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"group {group} committed {committed} on {tp}, expected 2")
    finally:
        await admin.close()
