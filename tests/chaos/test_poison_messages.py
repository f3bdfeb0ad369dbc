"""Poison on the command topic ends in the DLQ; the valid commands behind it still flow."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bookify_platform.services import PlatformConfig
from tests.stack import Api

pytestmark = pytest.mark.chaos


async def test_poison_goes_to_the_dlq_and_the_partition_moves_on(
    api: Api, stack_config: PlatformConfig
) -> None:
    resource = await api.create_resource(capacity=3)
    marker = uuid.uuid4().hex
    ce = [("ce_specversion", b"1.0"), ("ce_source", b"chaos"), ("ce_id", marker.encode())]
    poison = [
        (f"garbage {marker}".encode(), []),
        (f'{{"broken json {marker}'.encode(), [*ce, ("ce_type", b"bookify.booking.request.v1")]),
        (f'{{"m": "{marker}"}}'.encode(), [*ce, ("ce_type", b"bookify.nonsense.v9")]),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack_config.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value, headers in poison:
            # Same key as the resource: the poison sits on the partition ahead of the booking.
            await producer.send_and_wait(
                stack_config.topic_prefix + "bookify.commands",
                value,
                key=resource.encode(),
                headers=headers,
            )
    finally:
        await producer.stop()

    booking = await api.book(resource, "after-poison")
    assert booking.status_code == 202
    assert (await api.wait_terminal(booking.json()["id"], "after-poison"))["status"] == "confirmed"

    consumer = AIOKafkaConsumer(
        stack_config.topic_prefix + "bookify.dlq",
        bootstrap_servers=stack_config.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    dead: dict[bytes, dict[str, bytes]] = {}
    try:
        async with asyncio.timeout(30):
            while len(dead) < len(poison):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        if marker.encode() in (r.value or b""):
                            dead[r.value] = dict(r.headers)
    finally:
        await consumer.stop()
    assert set(dead) == {value for value, _ in poison}
    for headers in dead.values():
        assert (
            headers["dlq_source_topic"] == (stack_config.topic_prefix + "bookify.commands").encode()
        )
        assert headers["dlq_error_type"] == b"MalformedMessageError"
        assert int(headers["dlq_source_offset"]) >= 0
