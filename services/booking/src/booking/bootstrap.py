"""The composition root: every client, repository and handler of the service, built once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from booking.adapters import KafkaEventPublisher, MongoLedgerRepository
from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler
from shared.events import Message, utcnow
from shared.faults import FaultSwitch
from shared.kafka import ensure_topics, make_broker
from shared.logging import get_logger
from shared.mongo import Document, make_mongo_client

log = get_logger(__name__)


@dataclass
class BookingService:
    settings: BookingSettings
    registry: CollectorRegistry
    metrics: BookingMetrics
    broker: KafkaBroker
    mongo: AsyncMongoClient[Document]
    ledger: MongoLedgerRepository
    publisher: KafkaEventPublisher
    handler: CommandHandler
    # Off by default; PUT /admin/faults switches it on in dev and test only.
    faults: FaultSwitch

    @property
    def subscribed_handler(self) -> Callable[[Message], Awaitable[None]]:
        """What the subscriber calls: the command handler behind the fault switch."""
        return self.faults.wrap(self.handler)

    async def start(self) -> None:
        """Before consuming: topics and the ledger's unique indexes must exist."""
        await ensure_topics(self.settings)
        await self.ledger.ensure_indexes()
        log.info(
            "booking_started",
            commands=self.settings.topics.commands,
            group_id=self.settings.topics.group(self.settings.group_id),
            db=self.settings.db_name,
        )

    async def close(self) -> None:
        await self.mongo.close()

    async def readiness(self) -> dict[str, bool]:
        """Whether each dependency answers a ping within the readiness timeout."""
        kafka, mongo = await asyncio.gather(self._ping_kafka(), self._ping_mongo())
        return {"kafka": kafka, "mongo": mongo}

    async def _ping_kafka(self) -> bool:
        try:
            return await self.broker.ping(self.settings.readiness_timeout)
        except Exception:  # a probe answers "not ready", it never fails the request
            return False

    async def _ping_mongo(self) -> bool:
        try:
            async with asyncio.timeout(self.settings.readiness_timeout):
                await self.mongo.admin.command("ping")
        except Exception:  # a probe answers "not ready", it never fails the request
            return False
        return True


def bootstrap(
    settings: BookingSettings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> BookingService:
    """Build the service. Nothing connects here: the broker and Mongo connect on start/first use."""
    settings = settings or BookingSettings()
    registry = CollectorRegistry()
    metrics = BookingMetrics(registry)
    broker = make_broker(settings, registry=registry, tracer_provider=tracer_provider)
    mongo = make_mongo_client(settings.mongo_uri)
    ledger = MongoLedgerRepository(mongo[settings.db_name])
    publisher = KafkaEventPublisher(broker, settings.topics.events)
    handler = CommandHandler(
        ledger, publisher, metrics, clock=clock, max_attempts=settings.append_attempts
    )
    return BookingService(
        settings=settings,
        registry=registry,
        metrics=metrics,
        broker=broker,
        mongo=mongo,
        ledger=ledger,
        publisher=publisher,
        handler=handler,
        faults=FaultSwitch(settings.environment),
    )
