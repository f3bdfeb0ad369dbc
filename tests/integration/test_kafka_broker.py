"""The Kafka the fixtures provide is a real broker: partitions, idempotent acks=all
producing, committed group offsets and partition assignment across group members."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import ValidationError

from shared.kafka import ensure_topics
from shared.settings import ServiceSettings

pytestmark = pytest.mark.integration


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")


def _group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        # A group without committed offsets starts at the beginning: if a commit were
        # lost, the restarted consumer would re-read and the duplicate check would fail.
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=500,
    )


async def _produce(bootstrap: str, topic: str, values: Iterable[str]) -> None:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, value=value.encode(), key=f"k{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(
    consumer: AIOKafkaConsumer, count: int, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records in delivery order until `count` arrived (may return more)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + within
    while len(records) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"got {len(records)} of {count} records in {within} s")
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            records.extend(batch)
    return records


async def test_created_topic_has_the_requested_partitions_each_with_a_leader(kafka, topic_factory):
    topic = await topic_factory("described", partitions=3)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()

    assert described["topic"] == topic
    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
    broker_ids = {b["node_id"] for b in cluster["brokers"]}
    assert {p["leader"] for p in described["partitions"]} <= broker_ids


async def test_idempotent_acks_all_producer_writes_every_record_once_in_order(kafka, topic_factory):
    topic = await topic_factory("idempotent", partitions=1)
    values = [f"booking-{i}" for i in range(50)]

    producer = _producer(kafka.bootstrap_servers)
    await producer.start()
    try:
        metadata = [
            await producer.send_and_wait(topic, value=v.encode(), key=b"same-key") for v in values
        ]
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = await _consume(consumer, len(values))
    finally:
        await consumer.stop()

    assert [m.offset for m in metadata] == list(range(50))
    assert [r.value for r in records] == [v.encode() for v in values]
    assert [r.offset for r in records] == list(range(50))


async def test_restarted_group_member_resumes_exactly_after_committed_offsets(
    kafka, topic_factory, unique_id
):
    topic = await topic_factory("resume", partitions=3)
    values = [f"m{i:02}" for i in range(30)]
    await _produce(kafka.bootstrap_servers, topic, values)
    group = f"{unique_id}-group"

    first = _group_consumer(kafka.bootstrap_servers, topic, group)
    await first.start()
    try:
        # Process only the first 12 delivered records. Within each partition they are a
        # prefix, so committing last+1 per partition marks exactly those as done.
        processed = (await _consume(first, 12))[:12]
        offsets: dict[TopicPartition, int] = {}
        for record in processed:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        await first.commit(offsets)
    finally:
        await first.stop()

    second = _group_consumer(kafka.bootstrap_servers, topic, group)
    await second.start()
    try:
        rest = await _consume(second, len(values) - 12)
        extra = await second.getmany(timeout_ms=1_000)
    finally:
        await second.stop()

    seen = [r.value for r in processed] + [r.value for r in rest]
    assert extra == {}
    assert len(seen) == len(values), "records were delivered twice or skipped"
    assert sorted(seen) == sorted(v.encode() for v in values)
    for record in rest:
        committed = offsets.get(TopicPartition(record.topic, record.partition), 0)
        assert record.offset >= committed


async def test_two_members_of_one_group_split_the_partitions_between_them(
    kafka, topic_factory, unique_id
):
    topic = await topic_factory("split", partitions=4)
    group = f"{unique_id}-group"
    members = [_group_consumer(kafka.bootstrap_servers, topic, group) for _ in range(2)]
    for member in members:
        await member.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            # Polling drives the heartbeats that complete the rebalance.
            await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members))
            a, b = (m.assignment() for m in members)
            if a and b and not (a & b) and len(a | b) == 4:
                break
            assert time.monotonic() < deadline, f"no split after 30 s: {a} / {b}"

        await _produce(kafka.bootstrap_servers, topic, [f"v{i}" for i in range(40)])
        received: list[list[ConsumerRecord[bytes, bytes]]] = [[], []]
        deadline = time.monotonic() + 30
        while sum(map(len, received)) < 40:
            assert time.monotonic() < deadline, f"got {sum(map(len, received))} of 40"
            results = await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members))
            for index, batches in enumerate(results):
                for batch in batches.values():
                    received[index].extend(batch)
        assignments = [m.assignment() for m in members]
    finally:
        for member in members:
            await member.stop()

    assert all(received), "each member should have received records"
    for index, records in enumerate(received):
        assert {TopicPartition(r.topic, r.partition) for r in records} <= assignments[index]
    assert sorted(r.value for rs in received for r in rs) == sorted(
        f"v{i}".encode() for i in range(40)
    )


async def test_topics_are_created_with_the_configured_replicas_and_min_insync(
    kafka: Any, unique_id: str
) -> None:
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=f"{unique_id}-replicas.",
        topic_partitions=2,
        topic_replication_factor=1,  # a single broker holds one replica at most
        topic_min_insync_replicas=1,
    )
    await ensure_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topics.commands)]
        )
        metadata = await admin.describe_topics([settings.topics.commands])
    finally:
        await admin.delete_topics(list(settings.topics.all()))
        await admin.close()
    configs = {name: value for name, value, *_ in described[0].resources[0][4]}
    assert configs["min.insync.replicas"] == "1"
    partitions = metadata[0]["partitions"]
    assert len(partitions) == 2
    assert all(len(p["replicas"]) == 1 for p in partitions)


def test_min_insync_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValidationError, match="every acks=all send would fail"):
        ServiceSettings(topic_replication_factor=1, topic_min_insync_replicas=2)
