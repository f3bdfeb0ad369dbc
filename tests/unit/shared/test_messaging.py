"""The shared subscriber policy: decode, retry with backoff, dead-letter, survive outages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect

from shared.events import ALL_TYPES, Message
from shared.messaging import (
    DeadLetters,
    Delivery,
    PolicyMetrics,
    Record,
    RetryPolicy,
    process_batch,
    process_record,
)
from tests.messages import record_of, sample_messages

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@dataclass
class FakePublish:
    sent: list[tuple[bytes, str, bytes | None, dict[str, str]]] = field(default_factory=list)

    async def __call__(
        self, value: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]
    ) -> None:
        self.sent.append((value, topic, key, headers))


@dataclass
class FlakyHandler:
    """Fails with ``error`` for the first ``failures`` calls, then succeeds."""

    failures: int
    error: Exception
    seen: list[Message] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        self.seen.append(message)
        if len(self.seen) <= self.failures:
            raise self.error


@dataclass
class Counted:
    """What PolicyMetrics exported after one record: dead letters and failed attempts."""

    registry: CollectorRegistry

    @property
    def dead(self) -> float:
        return self.registry.get_sample_value("bookify_dlq_messages_total", {"service": "t"}) or 0

    def failures(self, error_type: str) -> float:
        labels = {"service": "t", "error_type": error_type}
        return self.registry.get_sample_value("bookify_handler_failures_total", labels) or 0


async def under_policy(process: Any, what: Any, handler: Any, publish: FakePublish) -> Counted:
    """``process`` (process_record or process_batch) with the FAST policy; what it counted."""
    registry = CollectorRegistry()
    await process(
        what,
        handler,
        known_types=ALL_TYPES,
        dead_letters=DeadLetters(publish, "bookify.dlq"),
        policy=FAST,
        metrics=PolicyMetrics(registry, "t"),
    )
    return Counted(registry)


async def run(record: Record, handler: FlakyHandler, publish: FakePublish) -> Counted:
    return await under_policy(process_record, record, handler, publish)


async def test_a_healthy_record_is_handled_once_and_not_dead_lettered() -> None:
    handler, publish = FlakyHandler(0, RuntimeError()), FakePublish()
    message = sample_messages()[1]
    counted = await run(record_of(message), handler, publish)
    assert (counted.dead, counted.failures("RuntimeError")) == (0, 0)
    assert handler.seen == [message]
    assert publish.sent == []


async def test_a_transient_failure_is_retried_until_it_succeeds() -> None:
    handler, publish = FlakyHandler(2, RuntimeError("blip")), FakePublish()
    counted = await run(record_of(sample_messages()[1]), handler, publish)
    assert (counted.dead, counted.failures("RuntimeError")) == (0, 2)
    assert len(handler.seen) == 3
    assert publish.sent == []


async def test_a_record_that_keeps_failing_goes_to_the_dlq_with_its_origin() -> None:
    handler, publish = FlakyHandler(99, ValueError("boom")), FakePublish()
    record = record_of(sample_messages()[1])
    counted = await run(record, handler, publish)
    assert (counted.dead, counted.failures("ValueError")) == (1, FAST.attempts)
    assert len(handler.seen) == FAST.attempts
    [(value, topic, key, headers)] = publish.sent
    assert (value, topic, key) == (record.value, "bookify.dlq", record.key)
    assert headers["dlq_error_type"] == "ValueError"
    assert headers["dlq_error_message"] == "boom"
    assert headers["dlq_source_topic"] == "bookify.commands"
    assert (headers["dlq_source_partition"], headers["dlq_source_offset"]) == ("2", "41")
    assert headers["ce_type"] == "bookify.booking.request.v1"  # original headers kept


@dataclass
class Settler:
    """A handler's last resort: notes what it settled (and whether the DLQ had it first)."""

    publish: FakePublish
    failures: list[Exception] = field(default_factory=list)
    settled: list[tuple[Message, str, int]] = field(default_factory=list)

    async def __call__(self, message: Message, error: BaseException) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.settled.append((message, str(error), len(self.publish.sent)))


async def settle_after(
    handler: FlakyHandler, settler: Settler, message: Message | None = None
) -> Counted:
    registry = CollectorRegistry()
    await process_record(
        record_of(message or sample_messages()[1]),
        handler,
        known_types=ALL_TYPES,
        dead_letters=DeadLetters(settler.publish, "bookify.dlq"),
        policy=FAST,
        metrics=PolicyMetrics(registry, "t"),
        settle=settler,
    )
    return Counted(registry)


async def test_a_record_that_keeps_failing_is_dead_lettered_then_settled() -> None:
    settler, message = Settler(FakePublish()), sample_messages()[1]
    counted = await settle_after(FlakyHandler(99, ValueError("boom")), settler, message)
    assert counted.dead == 1
    # Settled once, with the last error, after its dead letter was sent.
    assert settler.settled == [(message, "boom", 1)]


async def test_settling_waits_out_an_outage() -> None:
    settler = Settler(FakePublish(), failures=[AutoReconnect("mongo restarting")] * 3)
    await settle_after(FlakyHandler(99, ValueError("boom")), settler)
    assert len(settler.settled) == 1


async def test_a_settle_that_fails_leaves_the_record_in_the_dlq_and_moves_on() -> None:
    settler = Settler(FakePublish(), failures=[TypeError("a bug in the last resort")])
    counted = await settle_after(FlakyHandler(99, ValueError("boom")), settler)
    assert (counted.dead, settler.settled) == (1, [])
    assert len(settler.publish.sent) == 1


async def test_a_record_handled_in_the_end_is_never_settled() -> None:
    settler = Settler(FakePublish())
    counted = await settle_after(FlakyHandler(FAST.attempts - 1, ValueError("blip")), settler)
    assert (counted.dead, settler.settled, settler.publish.sent) == (0, [], [])


async def test_a_malformed_record_is_dead_lettered_without_calling_the_handler() -> None:
    handler, publish = FlakyHandler(0, RuntimeError()), FakePublish()
    record = record_of(sample_messages()[1], value=b'{"quantity": "lots"}')
    assert (await run(record, handler, publish)).dead == 1
    assert handler.seen == []
    assert publish.sent[0][0] == b'{"quantity": "lots"}'


async def test_an_unreachable_database_is_waited_out_not_dead_lettered() -> None:
    handler, publish = FlakyHandler(FAST.attempts * 3, AutoReconnect("down")), FakePublish()
    assert (await run(record_of(sample_messages()[1]), handler, publish)).dead == 0
    assert len(handler.seen) == FAST.attempts * 3 + 1
    assert publish.sent == []


@pytest.mark.parametrize("attempt", [0, 1, 5, 30])
def test_backoff_stays_within_its_cap(attempt: int) -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=2.0)
    assert 0.0 <= policy.delay(attempt) <= min(2.0, 0.1 * 2**attempt)


# ---------------------------------------------------------------- batches
@dataclass
class BatchFake:
    """A batch handler: ``many`` fails with ``batch_error`` (if set); alone, ``poison`` fails."""

    batch_error: Exception | None = None
    poison: list[Message] = field(default_factory=list)
    batches: list[list[Message]] = field(default_factory=list)
    alone: list[Message] = field(default_factory=list)
    settled: list[Message] = field(default_factory=list)

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        self.batches.append([d.message for d in deliveries])
        if self.batch_error is not None:
            error, self.batch_error = self.batch_error, None
            raise error

    async def __call__(self, message: Message) -> None:
        self.alone.append(message)
        if message in self.poison:
            raise ValueError("poison")

    async def settle(self, message: Message, error: BaseException) -> None:
        self.settled.append(message)


async def run_batch(records: list[Record], handler: BatchFake, publish: FakePublish) -> Counted:
    return await under_policy(process_batch, records, handler, publish)


async def test_a_batch_is_handed_over_whole_and_malformed_records_go_to_the_dlq_alone() -> None:
    good = sample_messages()[:3]
    records = [record_of(good[0]), record_of(good[1], value=b"{oops"), record_of(good[2])]
    handler, publish = BatchFake(), FakePublish()

    counted = await run_batch(records, handler, publish)

    assert handler.batches == [[good[0], good[2]]]
    assert handler.alone == []
    assert [value for value, *_ in publish.sent] == [b"{oops"]
    assert counted.dead == 1


async def test_a_failing_batch_falls_back_one_by_one_and_only_the_bad_record_is_dead_lettered() -> (
    None
):
    good = sample_messages()[:3]  # three commands of different types (they share their ids)
    handler = BatchFake(batch_error=ValueError("one of them is bad"), poison=[good[1]])
    publish = FakePublish()

    counted = await run_batch([record_of(m) for m in good], handler, publish)

    assert len(handler.batches) == 1
    # Every record alone; the poison one retried until the policy gives up.
    assert handler.alone.count(good[0]) == handler.alone.count(good[2]) == 1
    assert handler.alone.count(good[1]) == FAST.attempts
    assert handler.settled == [good[1]]
    assert len(publish.sent) == 1
    assert counted.dead == 1
    assert counted.failures("ValueError") == 1 + FAST.attempts


async def test_an_outage_retries_the_whole_batch_until_it_passes() -> None:
    good = sample_messages()[:2]
    handler, publish = BatchFake(batch_error=AutoReconnect("mongo restarting")), FakePublish()

    counted = await run_batch([record_of(m) for m in good], handler, publish)

    assert handler.batches == [good, good]
    assert handler.alone == []
    assert (counted.dead, publish.sent) == (0, [])
