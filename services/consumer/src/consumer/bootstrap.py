"""The composition root: the one place that knows which adapter backs which port.

Import-time work is limited to objects that open nothing (broker object, registry,
subscriber registration); connections are made in :func:`running`, which the app's
lifespan enters before the broker starts consuming and leaves after it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from consumer.adapters.kafka_lag import LagSampler
from consumer.adapters.mongo import MongoViewRepository
from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.service_layer import EventHandler
from consumer.subscribers import subscribe_events
from shared.events import Message
from shared.faults import FaultSwitch
from shared.kafka import ensure_topics, make_broker
from shared.mongo import Document, make_mongo_client


class NotStartedError(RuntimeError):
    """An event arrived before the lifespan connected the views (a wiring bug)."""


@dataclass
class Runtime:
    settings: ConsumerSettings
    registry: CollectorRegistry
    metrics: ConsumerMetrics
    broker: KafkaBroker
    subscriber: DefaultSubscriber | None = None
    mongo: AsyncMongoClient[Document] | None = None
    views: MongoViewRepository | None = None
    handler: EventHandler | None = field(default=None, repr=False)
    # Off by default; PUT /admin/faults switches it on in dev and test only.
    faults: FaultSwitch = field(default_factory=lambda: FaultSwitch("prod"), repr=False)

    async def handle(self, message: Message) -> None:
        if self.handler is None:
            raise NotStartedError("the consumer received an event before it started")
        await self.faults.before_handling(str(message.message_id))
        await self.handler(message)

    async def readiness(self) -> dict[str, bool]:
        """Whether each dependency answers now; /readyz is 200 only when all do."""
        timeout = self.settings.readiness_timeout_seconds
        kafka = await self.broker.ping(timeout=timeout)
        mongo = False
        if self.views is not None:
            try:
                await asyncio.wait_for(self.views.ping(), timeout=timeout)
            except Exception:  # any failure means "not ready", the reason is in the logs
                mongo = False
            else:
                mongo = True
        return {"kafka": kafka, "mongo": mongo}


def build(settings: ConsumerSettings, *, tracer_provider: TracerProvider | None = None) -> Runtime:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    broker = make_broker(settings, registry=registry, tracer_provider=tracer_provider)
    runtime = Runtime(
        settings=settings,
        registry=registry,
        metrics=metrics,
        broker=broker,
        faults=FaultSwitch(settings.environment),
    )
    runtime.subscriber = subscribe_events(broker, settings, runtime.handle, metrics=metrics.policy)
    return runtime


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """Topics, Mongo client, indexes and the lag sampler, for as long as the app runs."""
    settings = runtime.settings
    await ensure_topics(settings)
    client: AsyncMongoClient[Document] = make_mongo_client(settings.mongo_uri)
    lag_task: asyncio.Task[None] | None = None
    try:
        views = MongoViewRepository(client[settings.views_db])
        await views.ensure_indexes()
        runtime.mongo, runtime.views = client, views
        runtime.handler = EventHandler(views, runtime.metrics)
        subscriber = runtime.subscriber
        sampler = LagSampler(
            runtime.metrics.consumer_lag,
            settings.topics.group(settings.group_id),
            lambda: subscriber.consumer if subscriber is not None else None,
        )
        lag_task = asyncio.create_task(sampler.run(settings.lag_interval_seconds))
        yield
    finally:
        if lag_task is not None:
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
        runtime.handler = runtime.views = runtime.mongo = None
        await client.close()
