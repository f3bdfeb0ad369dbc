"""The dead-letter topic for operators: read what is in it, and replay it where it came from.

A dead letter is the original record (value, key, headers) plus the ``dlq_*`` headers
:class:`shared.messaging.DeadLetters` adds: the error, and the source topic, partition and
offset. Replaying sends the original record back to its source topic with its own key and
headers, so it lands on the same partition, in the same place in its resource's order
relative to what comes after. The handlers are idempotent (op keys in the ledger, event ids
in the views), so replaying a record twice, or one that was settled already, changes nothing.

Records that could not even be decoded are not replayed: they would come straight back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import MalformedMessageError
from shared.kafka_security import kafka_client_options
from shared.settings import Topics

DLQ_HEADER_PREFIX = "dlq_"
REPLAYED_FROM = "dlq_replayed_from"
"""Set on a replayed record: where in the DLQ it came from (``<partition>:<offset>``)."""
UNDECODABLE = MalformedMessageError.__name__
READ_TIMEOUT_SECONDS = 30.0


class DeadLetterError(Exception):
    """The DLQ cannot be read or replayed as asked; the message says what to do."""


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        """How an operator names it: ``<partition>:<offset>`` in the DLQ topic."""
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        return dict(self.headers).get(name, b"").decode("utf-8", "replace")

    @property
    def ce_type(self) -> str:
        return self.header("ce_type")

    @property
    def source_topic(self) -> str:
        return self.header("dlq_source_topic")

    @property
    def replayable(self) -> bool:
        """False for records that were never decodable: a replay would dead-letter them again."""
        return bool(self.source_topic) and self.header("dlq_error_type") != UNDECODABLE

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The record's own headers, as it was first produced (trace context included)."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.timestamp.isoformat(),
            "type": self.ce_type or None,
            "error_type": self.header("dlq_error_type"),
            "error": self.header("dlq_error_message"),
            "source": (
                f"{self.source_topic}[{self.header('dlq_source_partition')}]"
                f"@{self.header('dlq_source_offset')}"
            ),
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "replayable": self.replayable,
        }

    def details(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "headers": {k: v.decode("utf-8", "replace") for k, v in self.headers},
            "value": self.value.decode("utf-8", "replace"),
        }


@dataclass(frozen=True)
class Selection:
    """Which dead letters to look at: all of them unless narrowed."""

    since: datetime | None = None
    ce_type: str | None = None
    ids: frozenset[str] = frozenset()

    def __call__(self, letter: DeadLetter) -> bool:
        if self.since is not None and letter.timestamp < self.since:
            return False
        if self.ce_type is not None and letter.ce_type != self.ce_type:
            return False
        return not self.ids or letter.id in self.ids


_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """``10m``, ``2h``, ``1d`` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    if match := _AGO.match(text.strip()):
        return now() - timedelta(**{_UNIT[match[2]]: float(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DeadLetterError(
            f"--since {text!r}: give a duration ago (30s, 10m, 2h, 1d) "
            "or an ISO time such as 2026-11-30T09:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_dead_letters(
    bootstrap: str, topics: Topics, selection: Selection = Selection()
) -> list[DeadLetter]:
    """Every dead letter ``selection`` picks, oldest first per partition (reads, never commits)."""
    consumer = AIOKafkaConsumer(
        **kafka_client_options(bootstrap),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    partitions = await _partitions(bootstrap, topics.dlq)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await _seek_start(consumer, partitions, selection.since)
        letters: list[DeadLetter] = []
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=int(READ_TIMEOUT_SECONDS * 1000))
            if not batch:
                raise DeadLetterError(
                    f"reading {topics.dlq} stalled for {READ_TIMEOUT_SECONDS:.0f} s; "
                    "is Kafka healthy? (`bookify status`)"
                )
            for tp, records in batch.items():
                letters.extend(letter for letter in map(_dead_letter, records) if selection(letter))
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return sorted(letters, key=lambda d: (d.timestamp, d.partition, d.offset))
    finally:
        await consumer.stop()


async def replay(bootstrap: str, topics: Topics, letters: Iterable[DeadLetter]) -> list[str]:
    """Send each replayable letter back to its source topic; the ids of those sent."""
    allowed = {topics.commands, topics.events}
    chosen = [d for d in letters if d.replayable]
    foreign = sorted({d.source_topic for d in chosen} - allowed)
    if foreign:
        raise DeadLetterError(
            f"dead letters come from {', '.join(foreign)}, not from this prefix's topics "
            f"({', '.join(sorted(allowed))}); pass the --topic-prefix they were written with"
        )
    producer = AIOKafkaProducer(
        **kafka_client_options(bootstrap), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        acks = [
            await producer.send(
                d.source_topic,
                d.value,
                key=d.key,
                headers=[*d.original_headers(), (REPLAYED_FROM, d.id.encode())],
            )
            for d in chosen
        ]
        for ack in acks:
            await ack
    finally:
        await producer.stop()
    return [d.id for d in chosen]


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code"):  # UNKNOWN_TOPIC_OR_PARTITION
        raise DeadLetterError(
            f"no topic {topic} on this broker: nothing was ever dead-lettered under this "
            "prefix, or the prefix is wrong (--topic-prefix)"
        )
    numbers = sorted(p["partition"] for p in described["partitions"])
    return [TopicPartition(topic, n) for n in numbers]


async def _seek_start(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: datetime | None
) -> None:
    """Explicit offsets (aiokafka's lazy seek_to_beginning can lose to its own reset)."""
    starts = await consumer.beginning_offsets(partitions)
    if since is not None:
        millis = int(since.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, millis))
        ends = await consumer.end_offsets(partitions)
        starts = {tp: at.offset if (at := found.get(tp)) else ends[tp] for tp in partitions}
    for tp in partitions:
        consumer.seek(tp, starts[tp])


def _dead_letter(record: Any) -> DeadLetter:
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value or b"",
        headers=tuple((k, v or b"") for k, v in record.headers),
    )
