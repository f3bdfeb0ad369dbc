"""`bookify reset` on a real FerretDB and Kafka: it drops the services' databases and deletes
their topics, and nothing else; without --yes it drops nothing of a store it was not given
by the local harness."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient
from typer.testing import CliRunner

from bookify.cli import app
from bookify_platform.services import store_databases
from shared.settings import Topics
from tests.conftest import KafkaServer, MongoServer

pytestmark = pytest.mark.integration

Document = dict[str, Any]


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        await admin.close()


def test_reset_drops_the_services_data_and_nothing_else(
    kafka: KafkaServer, mongo: MongoServer, unique_id: str, tmp_path: Path
) -> None:
    # Synchronous: the command runs its own event loop (asyncio.run), as from a shell.
    mongo_client: MongoClient[Document] = MongoClient(mongo.uri)
    db_prefix, topic_prefix = unique_id.replace("-", "_") + "_", f"{unique_id}."
    databases = store_databases(db_prefix)
    topics = list(Topics(topic_prefix).all())
    bystander_db, bystander_topic = f"{db_prefix}other", f"{unique_id}-other"
    for name in (*databases, bystander_db):
        mongo_client[name]["things"].insert_one({"n": 1})
    asyncio.run(_create_topics(kafka.bootstrap_servers, [*topics, bystander_topic]))

    def bookify_reset(*extra: str) -> Any:
        return CliRunner().invoke(
            app,
            [
                "reset",
                "--mongo",
                mongo.uri,
                "--kafka",
                kafka.bootstrap_servers,
                "--db-prefix",
                db_prefix,
                "--topic-prefix",
                topic_prefix,
                "--run-dir",
                str(tmp_path),
                *extra,
            ],
        )

    refused = bookify_reset()
    assert refused.exit_code == 1
    assert "is not the local harness: add --yes" in refused.output
    assert set(databases) <= set(mongo_client.list_database_names())
    assert set(topics) <= asyncio.run(_topics(kafka.bootstrap_servers))

    done = bookify_reset("--yes", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["local"] is False
    assert sorted(result["databases_dropped"]) == sorted(databases)
    assert sorted(result["topics_deleted"]) == sorted(topics)
    left_dbs = set(mongo_client.list_database_names())
    assert not set(databases) & left_dbs
    assert bystander_db in left_dbs
    left_topics = asyncio.run(_topics(kafka.bootstrap_servers))  # reset waits until they are gone
    assert not set(topics) & left_topics
    assert bystander_topic in left_topics

    again = bookify_reset("--yes", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["databases_dropped"] == []
    mongo_client.drop_database(bystander_db)
    mongo_client.close()


def test_reset_without_a_local_harness_names_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["reset", "--run-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no local Kafka or FerretDB is running" in result.output
