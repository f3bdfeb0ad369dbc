"""The error policy every Kafka subscriber shares: decode, retry with backoff, dead-letter.

FastStream gives us the broker, acks and telemetry; what it does not give is the policy
of *which* failures deserve a retry and what "still fails" means, so it lives here, once:

- A record that cannot be decoded (wrong envelope, unknown type, invalid data) goes
  straight to the dead-letter topic: no retry can fix it.
- A handler error is retried with exponential backoff and jitter; after
  ``RetryPolicy.attempts`` tries the record goes to the dead-letter topic with the
  error and its origin, the handler *settles* the message (its last resort: booking
  records a valid command as rejected with ``processing_failed``, so no booking waits
  forever), and the partition moves on. The dead letter stays for operators, and
  ``bookify dlq replay`` sends it back to its topic; handlers are idempotent, so a replay
  of something settled or applied already changes nothing.
- An unreachable dependency (MongoDB down, Kafka leader moving) is not the record's
  fault: it is retried without limit, so an outage delays bookings but never loses them.

Subscribers use ``AckPolicy.NACK_ON_ERROR``: an offset is committed only after
:func:`process_record` returns, i.e. after the handler succeeded or the record was
dead-lettered.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind
from prometheus_client import CollectorRegistry, Counter
from pymongo.errors import ConnectionFailure

from shared.events import MalformedMessageError, Message, decode
from shared.logging import get_logger
from shared.telemetry import annotate_span

log = get_logger(__name__)

UNAVAILABLE = (
    ConnectionFailure,  # includes AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff (AWS architecture blog's recommendation)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class PolicyMetrics:
    """The policy's Prometheus counters, one set per service (names in DESIGN §5).

    ``bookify_handler_failures_total`` counts every failed attempt (retried or not), so a
    flaky dependency shows before anything reaches the DLQ.
    """

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.dead_letters = Counter(
            "bookify_dlq_messages",
            "Records sent to the dead-letter topic.",
            ["service"],
            registry=registry,
        )
        self.failures = Counter(
            "bookify_handler_failures",
            "Failed handler attempts (each retry counts), by error type.",
            ["service", "error_type"],
            registry=registry,
        )
        # Export 0 from the start, so the first dead letter is an increase alerts can see.
        self.dead_letters.labels(service=service)

    def failed(self, error: BaseException) -> None:
        self.failures.labels(service=self.service, error_type=type(error).__name__).inc()

    def dead_lettered(self, error: BaseException) -> None:
        self.dead_letters.labels(service=self.service).inc()


@dataclass(frozen=True)
class Record:
    """What the policy needs of a Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]

    @property
    def header_map(self) -> dict[str, bytes]:
        return dict(self.headers)


class Publish(Protocol):
    async def __call__(
        self, value: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]
    ) -> None: ...


class DeadLetters:
    """Sends a record that could not be processed to the DLQ, with why and where from."""

    def __init__(self, publish: Publish, topic: str) -> None:
        self._publish = publish
        self.topic = topic

    async def send(self, record: Record, error: BaseException) -> None:
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
        headers.update(
            {
                "dlq_error_type": type(error).__name__,
                "dlq_error_message": str(error)[:2000],
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
            }
        )
        await self._publish(record.value or b"", topic=self.topic, key=record.key, headers=headers)
        log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=type(error).__name__,
            error=str(error)[:500],
        )


@dataclass(frozen=True)
class Delivery:
    """A decoded message and the record it came in (its headers carry the trace context)."""

    record: Record
    message: Message


class Settle(Protocol):
    async def __call__(self, message: Message, error: BaseException) -> None:
        """End ``message`` as well as can be after its handling kept failing with ``error``."""
        ...


async def leave_in_dlq(message: Message, error: BaseException) -> None:
    """Nothing to settle: the dead letter is all there is until an operator replays it."""


class BatchHandler(Protocol):
    """A handler that can take a whole batch, and one message alone (the fallback path)."""

    async def __call__(self, message: Message) -> None: ...

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        """Handle every delivery; idempotent, so a batch that failed halfway may come again."""
        ...

    async def settle(self, message: Message, error: BaseException) -> None:
        """The last resort for a valid message that kept failing (see :class:`Settle`)."""
        ...


async def process_batch(
    records: Sequence[Record],
    handler: BatchHandler,
    *,
    known_types: Mapping[str, type[Message]],
    dead_letters: DeadLetters,
    policy: RetryPolicy = RetryPolicy(),
    metrics: PolicyMetrics | None = None,
) -> None:
    """Run ``handler.many`` on the decodable records of a batch, under the same policy.

    Malformed records go to the DLQ at once. An outage retries the whole batch without limit.
    Any other failure falls back to the records one by one (:func:`process_record`), so one
    bad record is retried and dead-lettered alone while the others are handled: handlers are
    idempotent, so whatever the failed batch did already is replayed harmlessly.
    """
    deliveries: list[Delivery] = []
    for record in records:
        try:
            message = decode(record.header_map, record.value, known_types)
        except MalformedMessageError as exc:
            await _give_up(record, exc, dead_letters, metrics)
        else:
            deliveries.append(Delivery(record, message))
    if not deliveries:
        return
    outage = 0
    while True:
        try:
            await handler.many(deliveries)
            return
        except UNAVAILABLE as exc:
            outage += 1
            await _wait_out(exc, outage, policy)
        except Exception as exc:
            if metrics is not None:
                metrics.failed(exc)
            log.info("batch_failed_one_by_one", error=repr(exc), size=len(deliveries))
            break
    for delivery in deliveries:
        with consuming(delivery.record, delivery.message):
            await process_record(
                delivery.record,
                handler,
                known_types=known_types,
                dead_letters=dead_letters,
                policy=policy,
                metrics=metrics,
                settle=handler.settle,
            )


async def process_record(
    record: Record,
    handle: Callable[[Message], Awaitable[None]],
    *,
    known_types: Mapping[str, type[Message]],
    dead_letters: DeadLetters,
    policy: RetryPolicy = RetryPolicy(),
    metrics: PolicyMetrics | None = None,
    settle: Settle = leave_in_dlq,
) -> None:
    """Run ``handle`` on the decoded record under the policy in this module's docstring."""
    try:
        message = decode(record.header_map, record.value, known_types)
    except MalformedMessageError as exc:
        await _give_up(record, exc, dead_letters, metrics)
        return
    annotate_span(
        message_type=message.ce_type,
        booking_id=getattr(message, "booking_id", None),
        resource_id=getattr(message, "resource_id", None),
    )
    failures = 0
    outage = 0
    while True:
        try:
            await handle(message)
            return
        except UNAVAILABLE as exc:
            outage += 1
            await _wait_out(exc, outage, policy)
        except Exception as exc:
            failures += 1
            if metrics is not None:
                metrics.failed(exc)
            if failures >= policy.attempts:
                await _give_up(record, exc, dead_letters, metrics)
                await _settle(message, exc, settle, policy)
                return
            log.info("handler_retry", error=repr(exc), attempt=failures)
            await asyncio.sleep(policy.delay(failures))


async def _wait_out(error: BaseException, outage: int, policy: RetryPolicy) -> None:
    """Back off before trying again through an outage: capped, never given up on."""
    log.warning("dependency_unavailable", error=repr(error), attempt=outage)
    await asyncio.sleep(policy.delay(min(outage, 8)) + policy.base_delay)


async def _settle(
    message: Message, error: BaseException, settle: Settle, policy: RetryPolicy
) -> None:
    """Run the handler's last resort, through outages; if even that fails, the DLQ has it."""
    outage = 0
    while True:
        try:
            await settle(message, error)
            return
        except UNAVAILABLE as exc:
            outage += 1
            await _wait_out(exc, outage, policy)
        except Exception as exc:
            log.error("settle_failed", message_id=str(message.message_id), error=repr(exc))
            return


async def _give_up(
    record: Record,
    error: BaseException,
    dead_letters: DeadLetters,
    metrics: PolicyMetrics | None,
) -> None:
    await dead_letters.send(record, error)
    if metrics is not None:
        metrics.dead_lettered(error)


@contextmanager
def consuming(record: Record, message: Message, links: Sequence[Link] = ()) -> Iterator[Span]:
    """One message's ``<topic> process`` span, child of the span that produced it.

    FastStream's middleware gives a *batch* one span in a trace of its own, with links to the
    messages; a booking's trace must still run through each of its hops (DESIGN §5), so a
    batch handler opens this span per message, around the work and the publishes that are
    that message's. The context is read from the record's headers by OpenTelemetry's
    configured propagator (W3C traceparent), as FastStream itself reads it.
    """
    parent = propagate.extract({k: v.decode("utf-8", "replace") for k, v in record.headers})
    tracer = trace.get_tracer("bookify")
    with tracer.start_as_current_span(
        f"{record.topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=list(links),
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.message.id": str(message.message_id),
        },
    ) as span:
        annotate_span(
            message_type=message.ce_type,
            booking_id=getattr(message, "booking_id", None),
            resource_id=getattr(message, "resource_id", None),
        )
        yield span
