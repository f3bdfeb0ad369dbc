"""A gateway that reaches Kafka only after it started still checks the topics first: it
publishes nothing into topics unlike its settings, and its /readyz check says why."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition

from gateway.bootstrap import bootstrap, command_publisher
from gateway.config import GatewaySettings
from gateway.ports import DependencyUnavailableError
from shared.events import CreateResource, utcnow
from shared.kafka import ensure_topics, make_consumer
from shared.kafka_security import KafkaRefusedError

pytestmark = pytest.mark.integration


async def test_a_late_connect_to_mismatched_topics_publishes_nothing_and_says_why(
    gateway_settings: GatewaySettings,
) -> None:
    # Made by someone else with one partition; the gateway wants three.
    await ensure_topics(gateway_settings.model_copy(update={"topic_partitions": 1}))
    publisher = command_publisher(bootstrap(gateway_settings))
    command = CreateResource(
        command_id=uuid.uuid4(),
        principal="admin",
        accepted_at=utcnow(),
        resource_id=uuid.uuid4(),
        name="hall",
        capacity=1,
    )
    try:
        with pytest.raises(KafkaRefusedError) as refused:
            await publisher.ping()
        with pytest.raises(DependencyUnavailableError) as unavailable:
            await publisher.publish(command)
    finally:
        await publisher.close()

    commands = gateway_settings.topics.commands
    assert f"{commands} has 1 partitions, topic_partitions wants 3" in str(refused.value)
    assert not unavailable.value.outcome_unknown  # nothing was handed to the producer
    consumer = make_consumer(gateway_settings)
    await consumer.start()
    try:
        partition = TopicPartition(commands, 0)
        assert (await consumer.end_offsets([partition]))[partition] == 0
    finally:
        await consumer.stop()
