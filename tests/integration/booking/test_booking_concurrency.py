"""No overbooking with many handlers racing on one resource in one real database."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from booking.adapters import KafkaEventPublisher, MongoLedgerRepository, entry_id
from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler, Outcome
from shared.events import EVENT_TYPES, BookingConfirmed, CreateResource, RequestBooking, decode
from shared.kafka import make_broker
from shared.mongo import make_mongo_client

pytestmark = pytest.mark.integration

WORKERS = 4
SEATS = 10
BOOKINGS = 100


@pytest.fixture
async def broker(kafka: Any) -> AsyncIterator[KafkaBroker]:
    settings = BookingSettings(kafka_bootstrap_servers=kafka.bootstrap_servers)
    broker = make_broker(settings, registry=CollectorRegistry())
    await broker.start()
    yield broker
    await broker.stop()


async def read_all(bootstrap: str, topic: str, count: int, within: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + within
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def test_a_hundred_concurrent_bookings_for_ten_seats_confirm_exactly_ten(
    kafka: Any,
    mongo: Any,
    mongo_db: AsyncDatabase[dict[str, Any]],
    topic_factory: Any,
    broker: KafkaBroker,
) -> None:
    events_topic = await topic_factory("events", partitions=3)
    registry = CollectorRegistry()
    metrics = BookingMetrics(registry)
    # Four workers, each with its own client, sharing one database: a rebalance or zombie.
    clients = [make_mongo_client(mongo.uri) for _ in range(WORKERS)]
    repositories = [MongoLedgerRepository(client[mongo_db.name]) for client in clients]
    await repositories[0].ensure_indexes()
    publisher = KafkaEventPublisher(broker, events_topic)
    handlers = [CommandHandler(repo, publisher, metrics) for repo in repositories]
    now = datetime.now(UTC)
    rid = uuid4()
    await handlers[0].handle(
        CreateResource(
            command_id=uuid4(),
            principal="admin",
            accepted_at=now,
            resource_id=rid,
            name="drop",
            capacity=SEATS,
        )
    )
    requests = [
        RequestBooking(
            command_id=uuid4(),
            principal=f"fan-{i}",
            accepted_at=now,
            booking_id=uuid4(),
            resource_id=rid,
            quantity=1,
        )
        for i in range(BOOKINGS)
    ]
    try:
        outcomes = await asyncio.gather(
            *(handlers[i % WORKERS].handle(command) for i, command in enumerate(requests))
        )
        # A redelivery storm on top: every booking decided again by another worker.
        replays = await asyncio.gather(
            *(handlers[(i + 1) % WORKERS].handle(command) for i, command in enumerate(requests))
        )
    finally:
        for client in clients:
            await client.close()

    assert set(outcomes) == {Outcome.DECIDED}
    assert set(replays) == {Outcome.REPLAYED}
    ledger = await mongo_db["ledger"].find({"resource_id": str(rid)}).to_list()
    kinds = Counter(doc["kind"] for doc in ledger)
    assert kinds == {"created": 1, "confirmed": SEATS, "rejected": BOOKINGS - SEATS}
    assert sorted(doc["seq"] for doc in ledger) == list(range(1, BOOKINGS + 2))
    assert all(doc["_id"] == entry_id(rid, doc["seq"]) for doc in ledger)
    newest = max(ledger, key=lambda doc: doc["seq"])
    assert (newest["capacity"], newest["reserved"]) == (SEATS, SEATS)
    assert registry.get_sample_value("bookify_bookings_total", {"outcome": "confirmed"}) == SEATS

    records = await read_all(kafka.bootstrap_servers, events_topic, 1 + 2 * BOOKINGS)
    events = [decode(dict(r.headers), r.value, EVENT_TYPES) for r in records]
    assert len(events) == 1 + 2 * BOOKINGS
    unique = {e.message_id: e for e in events}
    assert len(unique) == 1 + BOOKINGS  # replays carry the same ids
    confirmed = [e for e in unique.values() if isinstance(e, BookingConfirmed)]
    assert len(confirmed) == SEATS
    assert sorted(e.available for e in confirmed) == list(range(SEATS))
