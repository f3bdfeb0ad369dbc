"""ensure_topics on the real broker: what it cannot create, and existing topics unlike the
settings, stop start-up with an error that names the topic and what differs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import TopicMismatchError, ensure_topics
from shared.settings import ServiceSettings
from tests.conftest import KafkaServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def prefix(kafka: KafkaServer, unique_id: str) -> AsyncIterator[str]:
    """A topic prefix of this test's own; its topics are deleted afterwards."""
    prefix = f"{unique_id}-checked."
    yield prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _settings(kafka: KafkaServer, prefix: str, **overrides: object) -> ServiceSettings:
    return ServiceSettings.model_validate(
        {"kafka_bootstrap_servers": kafka.bootstrap_servers, "topic_prefix": prefix} | overrides
    )


async def test_a_replication_factor_the_cluster_cannot_meet_stops_start_up(
    kafka: KafkaServer, prefix: str
) -> None:
    settings = _settings(kafka, prefix, topic_replication_factor=3)

    with pytest.raises(TopicMismatchError) as raised:
        await ensure_topics(settings)

    message = str(raised.value)
    assert f"{settings.topics.commands}: INVALID_REPLICATION_FACTOR" in message
    assert "replication factor=3" in message


async def test_an_existing_topic_with_fewer_partitions_is_named(
    kafka: KafkaServer, prefix: str
) -> None:
    await ensure_topics(_settings(kafka, prefix, topic_partitions=1))

    with pytest.raises(TopicMismatchError) as raised:
        await ensure_topics(_settings(kafka, prefix, topic_partitions=3))

    message = str(raised.value)
    for topic in _settings(kafka, prefix).topics.all():
        assert f"{topic} has 1 partitions, topic_partitions wants 3" in message


async def test_more_partitions_than_wanted_is_only_a_warning(
    kafka: KafkaServer, prefix: str
) -> None:
    await ensure_topics(_settings(kafka, prefix, topic_partitions=2))

    await ensure_topics(_settings(kafka, prefix, topic_partitions=1))  # does not raise


async def test_verify_only_names_the_missing_topic_and_creates_nothing(
    kafka: KafkaServer, prefix: str
) -> None:
    settings = _settings(kafka, prefix, create_topics=False)

    with pytest.raises(TopicMismatchError) as raised:
        await ensure_topics(settings)

    assert settings.topics.commands in str(raised.value)
    assert "create_topics is off" in str(raised.value)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()


async def test_verify_only_accepts_topics_the_operator_created(
    kafka: KafkaServer, prefix: str
) -> None:
    await ensure_topics(_settings(kafka, prefix))  # as the operator would

    await ensure_topics(_settings(kafka, prefix, create_topics=False))  # does not raise
