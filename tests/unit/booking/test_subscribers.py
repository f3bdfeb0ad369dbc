"""The Kafka entrypoint wired on FastStream's in-memory TestKafkaBroker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import KafkaMessage as KafkaStreamMessage
from faststream.kafka.parser import AioKafkaParser

from booking.adapters import KafkaEventPublisher
from booking.bootstrap import BookingDeps, bootstrap
from booking.config import BookingSettings
from booking.metrics import BookingMetrics
from shared.events import EVENT_TYPES, BookingConfirmed, Message, decode, encode
from shared.kafka import parse_leniently, raw_body
from tests.unit.booking.fakes import FakeLedger, create, request, ticking_clock


@dataclass
class Wired:
    broker: KafkaBroker
    settings: BookingSettings
    metrics: BookingMetrics
    ledger: FakeLedger
    events: list[Any] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)

    async def send(self, value: bytes, headers: dict[str, str], key: bytes = b"k") -> None:
        await self.broker.publish(
            value, topic=self.settings.topics.commands, key=key, headers=headers
        )

    async def send_message(self, message: Message) -> None:
        value, headers = encode(message, source="test")
        await self.send(value, headers, key=str(message.partition_key).encode())


@pytest.fixture
async def wired() -> AsyncIterator[Wired]:
    settings = BookingSettings(topic_prefix="unit.", retry_base_delay=0.0, retry_max_delay=0.0)
    # The events go out through a broker of their own, so the test can read them off it.
    events_broker = KafkaBroker()
    ledger = FakeLedger()
    publisher = KafkaEventPublisher(events_broker, settings.topics.events)
    runtime = bootstrap(
        settings, overrides=BookingDeps(ledger=ledger, publisher=publisher, clock=ticking_clock())
    )
    w = Wired(runtime.broker, settings, runtime.metrics, ledger)

    @events_broker.subscriber(settings.topics.events, decoder=raw_body)
    async def events(_: bytes, message: KafkaMessage) -> None:
        w.events.append(message.raw_message)

    @runtime.broker.subscriber(settings.topics.dlq, decoder=raw_body)
    async def dead(_: bytes, message: KafkaMessage) -> None:
        w.dead.append(message.raw_message)

    async with TestKafkaBroker(events_broker), TestKafkaBroker(runtime.broker), runtime.running():
        yield w


async def test_a_valid_command_is_decided_and_its_event_published_keyed_by_resource(
    wired: Wired,
) -> None:
    rid = uuid4()
    await wired.send_message(create(rid, 2))
    booking = request(rid, 2)
    await wired.send_message(booking)

    assert len(wired.events) == 2
    record = wired.events[1]
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ce_type"] == BookingConfirmed.ce_type
    assert headers["ce_source"] == "bookify/booking"
    assert headers["content-type"] == "application/json"
    assert record.key == str(rid).encode()
    event = decode(headers, record.value, EVENT_TYPES)
    assert isinstance(event, BookingConfirmed)
    assert (event.booking_id, event.available, event.version) == (booking.booking_id, 0, 2)
    assert wired.dead == []


@pytest.mark.parametrize(
    ("value", "headers", "error"),
    [
        pytest.param(
            b"{not json",
            {"ce_specversion": "1.0", "ce_type": "bookify.booking.request.v1"},
            "MalformedMessageError",
            id="invalid-json",
        ),
        pytest.param(
            b"{}", {"content-type": "application/json"}, "MalformedMessageError", id="no-envelope"
        ),
        pytest.param(
            b'{"x": 1}',
            {"ce_specversion": "1.0", "ce_type": "bookify.booking.confirmed.v1"},
            "MalformedMessageError",
            id="an-event-on-the-commands-topic",
        ),
    ],
)
async def test_a_malformed_record_goes_to_the_dlq_with_its_origin_and_the_partition_moves_on(
    wired: Wired, value: bytes, headers: dict[str, str], error: str
) -> None:
    await wired.send(value, {"content-type": "application/json", **headers}, key=b"poison")
    await wired.send_message(create(uuid4(), 1))

    [record] = wired.dead
    dlq = {k: v.decode() for k, v in record.headers}
    assert record.value == value
    assert record.key == b"poison"
    assert dlq["dlq_error_type"] == error
    assert dlq["dlq_source_topic"] == wired.settings.topics.commands
    assert {"dlq_source_partition", "dlq_source_offset", "dlq_error_message"} <= set(dlq)
    assert {k: dlq[k] for k in headers} == headers  # the original headers travel along
    assert len(wired.events) == 1  # the valid record behind it was processed
    dead_total = wired.metrics.registry.get_sample_value(
        "bookify_dlq_messages_total", {"service": "booking"}
    )
    assert dead_total == 1


async def test_a_record_with_undecodable_header_bytes_still_reaches_the_handler() -> None:
    record = ConsumerRecord(
        topic="bookify.commands",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=[("ce_type", b"\xff\xfe"), ("ce_specversion", None)],
    )
    default = AioKafkaParser(msg_class=KafkaStreamMessage, regex=None).parse_message

    with pytest.raises((UnicodeDecodeError, AttributeError)):
        await default(record)
    message = await parse_leniently(record, default)

    assert message.headers == {"ce_type": "\ufffd\ufffd", "ce_specversion": ""}
