"""The consumer app on the real broker and database: events in, views out, poison to the DLQ.

The app runs exactly as ``python -m consumer`` builds it (create_app + its lifespan),
minus uvicorn: events are produced with a plain aiokafka producer and ``shared`` encode().
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from asgi_lifespan import LifespanManager
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from consumer.app import create_app
from consumer.config import ConsumerSettings
from shared.events import BookingConfirmed, Event, ResourceCreated, encode
from shared.mongo import Document

pytestmark = pytest.mark.integration

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 30.0) -> T:
    deadline = time.monotonic() + within
    while True:
        if (value := await probe()) is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the views never reached the expected state")
        await asyncio.sleep(0.1)


@dataclass
class Running:
    settings: ConsumerSettings
    views: AsyncDatabase[Document]
    producer: AIOKafkaProducer
    http: httpx.AsyncClient
    resource_id: UUID

    async def send(self, event: Event) -> None:
        value, headers = encode(event, source="test")
        await self.send_raw(value, [(k, v.encode()) for k, v in headers.items()])

    async def send_raw(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(
            self.settings.topics.events, value, key=str(self.resource_id).encode(), headers=headers
        )

    async def booking(self, booking_id: UUID, status: str) -> Document:
        async def probe() -> Document | None:
            doc = await self.views["bookings"].find_one({"_id": str(booking_id)})
            return doc if doc and doc["status"] == status else None

        return await eventually(probe)

    async def applied(self, event: Event) -> None:
        """Wait until the event is fully applied (marking it processed is the last write)."""
        processed = self.views["processed_events"]
        await eventually(lambda: processed.find_one({"_id": str(event.event_id)}))

    async def metric(self, name: str) -> float:
        response = await self.http.get("/metrics")
        for line in response.text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    async def metric_reaches(self, name: str, value: float) -> float:
        """The metric once it has ``value``, or its last value after a short wait."""
        deadline = time.monotonic() + 5
        while True:
            current = await self.metric(name)
            if current == value or time.monotonic() > deadline:
                return current
            await asyncio.sleep(0.05)


@pytest.fixture
async def running(
    kafka: Any, mongo: Any, mongo_client: AsyncMongoClient[Document], unique_id: str
) -> AsyncIterator[Running]:
    settings = ConsumerSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        mongo_uri=mongo.uri,
        topic_prefix=f"{unique_id}.",
        topic_partitions=3,
        views_db=f"{unique_id.replace('-', '_')}_views",
        lag_interval_seconds=0.2,
        log_json=False,
    )
    app = create_app(settings)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
            await producer.start()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://consumer") as http:
                yield Running(settings, mongo_client[settings.views_db], producer, http, uuid4())
    finally:
        await producer.stop()
        await mongo_client.drop_database(settings.views_db)


def created(resource_id: UUID, *, capacity: int = 10) -> ResourceCreated:
    now = datetime.now(UTC)
    return ResourceCreated(
        event_id=uuid4(),
        command_id=uuid4(),
        resource_id=resource_id,
        accepted_at=now,
        name="Hall A",
        capacity=capacity,
        available=capacity,
        version=1,
    )


def confirmed(
    resource_id: UUID, booking_id: UUID, *, quantity: int, available: int, version: int
) -> BookingConfirmed:
    return BookingConfirmed(
        event_id=uuid4(),
        command_id=uuid4(),
        resource_id=resource_id,
        accepted_at=datetime.now(UTC) - timedelta(milliseconds=20),
        booking_id=booking_id,
        principal="alice",
        quantity=quantity,
        available=available,
        version=version,
    )


async def test_confirmed_booking_becomes_visible_with_reduced_availability(
    running: Running,
) -> None:
    booking_id = uuid4()
    rid = running.resource_id
    event = confirmed(rid, booking_id, quantity=2, available=8, version=2)

    await running.send(created(rid, capacity=10))
    await running.send(event)

    await running.applied(event)
    view = await running.booking(booking_id, "confirmed")
    assert (view["principal"], view["resource_id"], view["quantity"]) == ("alice", str(rid), 2)
    resource = await running.views["resources"].find_one({"_id": str(rid)})
    assert resource is not None
    assert (resource["name"], resource["capacity"], resource["available"]) == ("Hall A", 10, 8)
    note = await running.views["notifications"].find_one({"_id": str(event.event_id)})
    assert note is not None
    assert note["text"] == f"Booking {booking_id} confirmed: 2 seat(s) on Hall A"
    assert await running.metric_reaches("bookify_booking_e2e_seconds_count", 2) == 2


async def test_redelivered_event_changes_nothing(running: Running) -> None:
    rid = running.resource_id
    first, marker = uuid4(), uuid4()
    event = confirmed(rid, first, quantity=2, available=8, version=2)
    await running.send(created(rid))
    await running.send(event)
    before = await running.booking(first, "confirmed")
    resource_before = await running.views["resources"].find_one({"_id": str(rid)})

    await running.send(event)  # the same record again, as a producer retry would
    # Same key, same partition: once the marker is applied the redelivery was handled.
    last = confirmed(rid, marker, quantity=1, available=7, version=3)
    await running.send(last)
    await running.applied(last)

    assert await running.views["bookings"].find_one({"_id": str(first)}) == before
    resource = await running.views["resources"].find_one({"_id": str(rid)})
    assert resource is not None
    assert resource_before is not None
    assert (resource["available"], resource["version"]) == (7, 3)
    assert await running.views["notifications"].count_documents({"booking_id": str(first)}) == 1
    # Three events measured, the redelivery not; give a 4th observation time to show up.
    await asyncio.sleep(0.3)
    assert await running.metric("bookify_booking_e2e_seconds_count") == 3


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (
            b"{definitely not json",
            [("ce_specversion", b"1.0"), ("ce_type", b"bookify.booking.confirmed.v1")],
        ),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe not utf-8")]),
    ],
    ids=["invalid-json", "non-utf8-header"],
)
async def test_poison_record_goes_to_the_dlq_and_the_next_event_is_still_applied(
    running: Running, kafka: Any, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    booking_id = uuid4()
    rid = running.resource_id
    await running.send(created(rid))

    await running.send_raw(value, [*headers, ("content-type", b"application/json")])
    after = confirmed(rid, booking_id, quantity=1, available=9, version=2)
    await running.send(after)

    await running.applied(after)
    assert (await running.booking(booking_id, "confirmed"))["quantity"] == 1
    dlq = AIOKafkaConsumer(
        running.settings.topics.dlq,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await dlq.start()
    try:
        record = await asyncio.wait_for(dlq.getone(), timeout=20)
    finally:
        await dlq.stop()
    dead = dict(record.headers)
    assert record.value == value
    assert dead["dlq_error_type"] == b"MalformedMessageError"
    assert dead["dlq_source_topic"] == running.settings.topics.events.encode()
    dlq_total = 'bookify_dlq_messages_total{service="consumer"}'
    assert await running.metric_reaches(dlq_total, 1) == 1


async def test_health_readiness_and_metrics_endpoints(running: Running) -> None:
    rid = running.resource_id
    await running.send(created(rid))
    await eventually(lambda: running.views["resources"].find_one({"_id": str(rid)}))

    health = await running.http.get("/healthz")
    ready = await running.http.get("/readyz")

    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"kafka": True, "mongodb": True}}

    async def lag_reported() -> str | None:
        text = (await running.http.get("/metrics")).text
        return text if "bookify_consumer_lag{" in text else None

    text = await eventually(lag_reported, within=15)
    settings = running.settings
    assert f'group="{settings.topics.group(settings.group_id)}"' in text
    assert f'topic="{running.settings.topics.events}"' in text
    openmetrics = await running.http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert "bookify_booking_e2e_seconds_bucket" in openmetrics.text
