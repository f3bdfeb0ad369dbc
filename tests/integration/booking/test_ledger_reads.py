"""Every ledger read a client, a redelivery or a restart can cause is a primary-key read.

FerretDB v1 serves only ``_id`` from an index: any other filter scans the whole ledger in Go,
and a crowd finds such a path (the cancel cliff: after a booking crash, cancels of bookings
that ended rejected looked their own op_key up, 2.5 s at 12,500 entries and 9.9 s at 67,000,
one after another on the hot partition). A command listener on a client of the real server
records what the decide loop sends, so the proof does not depend on the ledger's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from booking.adapters import KafkaEventPublisher, MongoLedgerRepository
from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler, Outcome
from shared.events import CancelBooking, CreateResource, RequestBooking
from shared.kafka import make_broker
from shared.mongo import Document
from tests.messages import deliveries
from tests.support.mongo_commands import Filters
from tests.support.mongo_commands import monitored as monitored_db

pytestmark = pytest.mark.integration


@pytest.fixture
def reads() -> Filters:
    return Filters(recording=False)


@pytest.fixture
async def monitored(
    mongo: Any, mongo_db: AsyncDatabase[Document], reads: Filters
) -> AsyncIterator[AsyncDatabase[Document]]:
    async with monitored_db(mongo.uri, mongo_db.name, reads) as db:
        yield db


@pytest.fixture
async def broker(kafka: Any) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(
        BookingSettings(kafka_bootstrap_servers=kafka.bootstrap_servers),
        registry=CollectorRegistry(),
    )
    await broker.start()
    yield broker
    await broker.stop()


@dataclass
class Ticketing:
    """A resource, and builders of the commands a crowd sends it."""

    resource_id: UUID = field(default_factory=uuid4)

    def create(self, capacity: int) -> CreateResource:
        return CreateResource(
            command_id=uuid4(),
            principal="admin",
            accepted_at=datetime.now(UTC),
            resource_id=self.resource_id,
            name="Hall A",
            capacity=capacity,
        )

    def request(self, quantity: int = 1) -> RequestBooking:
        return RequestBooking(
            command_id=uuid4(),
            principal="alice",
            accepted_at=datetime.now(UTC),
            booking_id=uuid4(),
            resource_id=self.resource_id,
            quantity=quantity,
        )

    def cancel(self, booking: RequestBooking) -> CancelBooking:
        return CancelBooking(
            command_id=uuid4(),
            principal=booking.principal,
            accepted_at=datetime.now(UTC),
            booking_id=booking.booking_id,
            resource_id=self.resource_id,
        )


@pytest.fixture
async def worker_factory(
    monitored: AsyncDatabase[Document], broker: KafkaBroker, topic_factory: Any
) -> Any:
    events = await topic_factory("events")
    ledger = MongoLedgerRepository(monitored)
    await ledger.ensure_indexes()

    def worker() -> CommandHandler:
        """A fresh worker (no cached heads), as after a restart or a rebalance."""
        return CommandHandler(
            ledger,
            KafkaEventPublisher(broker, events),
            BookingMetrics(CollectorRegistry()),
        )

    return worker


async def test_cancels_of_rejected_unknown_and_cancelled_bookings_read_only_by_id(
    worker_factory: Any, reads: Filters
) -> None:
    hall, other = Ticketing(), Ticketing()
    worker = worker_factory()
    await worker.handle(hall.create(capacity=2))
    await worker.handle(other.create(capacity=500))
    for _ in range(200):  # a ledger of some size: a scan would have something to read
        await worker.handle(other.request())
    confirmed, rejected = hall.request(2), hall.request(1)
    assert await worker.handle(confirmed) is Outcome.DECIDED
    assert await worker.handle(rejected) is Outcome.DECIDED  # sold out

    reads.recording = True
    # The cliff: the cancel of a booking decided rejected (its view still said pending).
    assert await worker.handle(hall.cancel(rejected)) is Outcome.IGNORED
    assert await worker_factory().handle(hall.cancel(rejected)) is Outcome.IGNORED
    assert await worker.handle(hall.cancel(hall.request())) is Outcome.IGNORED  # never decided
    first_cancel = hall.cancel(confirmed)
    assert await worker.handle(first_cancel) is Outcome.DECIDED
    # Cancelled twice (the view still said confirmed), and the first one redelivered, cold.
    assert await worker.handle(hall.cancel(confirmed)) is Outcome.IGNORED
    assert await worker_factory().handle(first_cancel) is Outcome.REPLAYED
    # A redelivered request and creation, on a cold worker.
    assert await worker_factory().handle(rejected) is Outcome.REPLAYED
    assert await worker_factory().handle(hall.create(capacity=2)) is Outcome.REPLAYED
    reads.recording = False

    assert reads.sent  # the listener saw the handler's reads
    assert reads.scans() == []


async def test_a_batch_redelivered_after_a_crash_lost_its_pointers_reads_only_by_id(
    worker_factory: Any, monitored: AsyncDatabase[Document], reads: Filters
) -> None:
    hall = Ticketing()
    await worker_factory().handle(hall.create(capacity=100))
    batch = [hall.request() for _ in range(50)]
    await worker_factory().many(deliveries(*batch))
    # The crash: the batch's entries are stored, their pointers are not.
    ops = [f"decide:{command.booking_id}" for command in batch]
    await monitored["ledger_ops"].delete_many({"_id": {"$in": ops}})
    cancels = [hall.cancel(command) for command in batch[:5]]

    reads.recording = True
    redelivered = worker_factory()
    await redelivered.many(deliveries(*batch, *cancels))
    reads.recording = False

    assert reads.scans() == []
    ledger = MongoLedgerRepository(monitored)
    for command in batch:  # every decision is findable again by its pointer
        entry = await ledger.find(f"decide:{command.booking_id}", hall.resource_id, head=0)
        assert entry is not None
    head = await ledger.get(hall.resource_id, 1 + len(batch) + len(cancels))
    assert head is not None
    assert head.reserved == len(batch) - len(cancels)  # decided once each, cancels applied
