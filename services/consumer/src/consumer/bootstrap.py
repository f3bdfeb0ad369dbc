"""The composition root: which adapter backs which port, and the subscriber that projects.

Wired like every Bookify service (see :mod:`shared.service`): ``bootstrap`` builds the
runtime and registers the events subscriber; the app's lifespan connects
:class:`ConsumerDeps` (or takes ``overrides``, fakes in unit tests), samples the consumer
lag while it runs, and only then starts consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.sdk.trace import TracerProvider
from pymongo import AsyncMongoClient

from consumer.adapters.kafka_lag import LagSampler
from consumer.adapters.mongo import MongoViewRepository
from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.ports import ViewRepository
from consumer.service_layer import EventHandler
from shared.events import EVENT_TYPES, utcnow
from shared.kafka import ensure_topics
from shared.mongo import Document
from shared.retention import bounded
from shared.service import ReadinessCheck, ServiceRuntime, standard_readiness


@dataclass(frozen=True)
class ConsumerDeps:
    """Everything the projector touches; ``bootstrap(overrides=...)`` injects fakes."""

    views: ViewRepository
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow


ConsumerRuntime = ServiceRuntime[ConsumerSettings, ConsumerDeps, ConsumerMetrics]


def bootstrap(
    settings: ConsumerSettings | None = None,
    *,
    overrides: ConsumerDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ConsumerRuntime:
    """Build the service. Nothing connects here: the lifespan does (``runtime.running()``)."""
    settings = settings or ConsumerSettings()

    @asynccontextmanager
    async def connect(
        runtime: ConsumerRuntime, mongo: AsyncMongoClient[Document]
    ) -> AsyncIterator[ConsumerDeps]:
        """Topics first; the lag sampler for as long as the process runs. The views need no
        index but ``_id``'s: every read is by ``_id`` (DESIGN §4)."""
        await ensure_topics(settings)
        views = MongoViewRepository(mongo[settings.views_db])
        sampler = LagSampler(
            runtime.metrics.consumer_lag, settings.group, lambda: subscriber.consumer
        )
        lag_task = asyncio.create_task(sampler.run(settings.lag_interval_seconds))
        retained = views.retained(settings.retention_seconds)
        try:
            async with bounded(retained, interval=settings.retention_sweep_seconds):
                yield ConsumerDeps(views=views, readiness=standard_readiness(runtime, mongo))
        finally:
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task

    runtime = ConsumerRuntime(
        settings,
        metrics=ConsumerMetrics,
        connect=connect,
        overrides=overrides,
        tracer_provider=tracer_provider,
    )

    def projector(deps: ConsumerDeps) -> EventHandler:
        return EventHandler(
            deps.views, runtime.metrics, clock=deps.clock, checkpoint=runtime.faults.checkpoint
        )

    subscriber = runtime.subscribe(
        settings.topics.events,
        projector,
        known_types=EVENT_TYPES,
        metrics=runtime.metrics.policy,
        title="consumer-events",
        description="Projects booking events into the views the gateway reads.",
    )
    return runtime
