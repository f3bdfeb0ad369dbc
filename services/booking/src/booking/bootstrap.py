"""The composition root: which adapter backs which port, and the subscriber that decides.

Wired like every Bookify service (see :mod:`shared.service`): ``bootstrap`` builds the
runtime and registers the commands subscriber; the app's lifespan connects :class:`BookingDeps`
(or takes ``overrides``, fakes in unit tests) and only then starts consuming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.sdk.trace import TracerProvider
from pymongo import AsyncMongoClient

from booking.adapters import KafkaEventPublisher, MongoLedgerRepository
from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from booking.ports import EventPublisher, LedgerRepository
from booking.service_layer import CommandHandler
from shared.events import COMMAND_TYPES, utcnow
from shared.kafka import ensure_topics
from shared.mongo import Document
from shared.service import ReadinessCheck, ServiceRuntime, standard_readiness


@dataclass(frozen=True)
class BookingDeps:
    """Everything the decide loop touches; ``bootstrap(overrides=...)`` injects fakes."""

    ledger: LedgerRepository
    publisher: EventPublisher
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow


BookingRuntime = ServiceRuntime[BookingSettings, BookingDeps, BookingMetrics]


@asynccontextmanager
async def connect(
    runtime: BookingRuntime, mongo: AsyncMongoClient[Document]
) -> AsyncIterator[BookingDeps]:
    """Before consuming: topics and the ledger's unique indexes must exist."""
    settings = runtime.settings
    await ensure_topics(settings)
    # A crash loses at most the pointers of the batches in flight: this worker's, a zombie's.
    ledger = MongoLedgerRepository(mongo[settings.db_name], tail=2 * settings.batch_max_records)
    await ledger.ensure_indexes()
    yield BookingDeps(
        ledger=ledger,
        publisher=KafkaEventPublisher(runtime.broker, settings.topics.events),
        readiness=standard_readiness(runtime, mongo),
    )


def bootstrap(
    settings: BookingSettings | None = None,
    *,
    overrides: BookingDeps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> BookingRuntime:
    """Build the service. Nothing connects here: the lifespan does (``runtime.running()``)."""
    settings = settings or BookingSettings()
    runtime = BookingRuntime(
        settings,
        metrics=BookingMetrics,
        connect=connect,
        overrides=overrides,
        tracer_provider=tracer_provider,
    )
    metrics = runtime.metrics

    def decider(deps: BookingDeps) -> CommandHandler:
        return CommandHandler(
            deps.ledger,
            deps.publisher,
            metrics,
            clock=deps.clock,
            max_attempts=settings.append_attempts,
            checkpoint=runtime.faults.checkpoint,
        )

    runtime.subscribe(
        settings.topics.commands,
        decider,
        known_types=COMMAND_TYPES,
        metrics=metrics.policy,
        title="booking-commands",
        description="Decides CreateResource, RequestBooking and CancelBooking commands.",
    )
    return runtime
