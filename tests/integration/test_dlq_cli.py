"""`bookify dlq` on a real broker: list, show, filter and replay what DeadLetters wrote."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from bookify.cli import app
from bookify.dlq import REPLAYED_FROM, parse_since
from shared.events import MalformedMessageError, encode
from shared.messaging import DeadLetters, Record
from shared.settings import Topics
from tests.messages import sample_messages

REQUEST = "bookify.booking.request.v1"
CONFIRMED = "bookify.booking.confirmed.v1"


async def _prepare(bootstrap: str, topics: Topics) -> None:
    """The prefix's topics, and three dead letters: a command, an event, and garbage."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 3, 1) for t in topics.all()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()

    async def publish(
        value: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]
    ) -> None:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )

    letters = DeadLetters(publish, topics.dlq)
    by_type = {m.ce_type: m for m in sample_messages()}
    try:
        for source, ce_type, error in (
            (topics.commands, REQUEST, RuntimeError("kept failing")),
            (topics.events, CONFIRMED, RuntimeError("views down")),
        ):
            value, headers = encode(by_type[ce_type], source="test")
            record = Record(
                source, 1, 7, b"resource-1", value, [(k, v.encode()) for k, v in headers.items()]
            )
            await letters.send(record, error)
        garbage = Record(topics.commands, 0, 3, None, b"garbage", [])
        await letters.send(garbage, MalformedMessageError("not a CloudEvent"))
    finally:
        await producer.stop()


async def _read_back(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        found: list[Any] = []
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found.extend(records)
        return found
    finally:
        await consumer.stop()


def dlq(*args: str) -> Any:
    result = CliRunner().invoke(app, ["dlq", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def topics(kafka: Any) -> Topics:
    topics = Topics(f"dlq-{uuid.uuid4().hex[:8]}.")
    asyncio.run(_prepare(kafka.bootstrap_servers, topics))
    return topics


def test_list_show_filter_and_replay(kafka: Any, topics: Topics) -> None:
    where = ["--kafka", kafka.bootstrap_servers, "--topic-prefix", topics.prefix]

    listed = json.loads(dlq("list", "--json", *where).stdout)
    assert sorted((d["type"] or "", d["replayable"]) for d in listed) == [
        ("", False),
        (CONFIRMED, True),
        (REQUEST, True),
    ]
    request = next(d for d in listed if d["type"] == REQUEST)
    assert request["error_type"] == "RuntimeError"
    assert request["source"] == f"{topics.commands}[1]@7"

    shown = json.loads(dlq("show", request["id"], *where).stdout)
    assert shown["headers"]["dlq_error_message"] == "kept failing"
    assert json.loads(shown["value"])["quantity"] == 2

    only_events = json.loads(dlq("list", "--json", "--type", CONFIRMED, *where).stdout)
    assert [d["type"] for d in only_events] == [CONFIRMED]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert json.loads(dlq("list", "--json", "--since", future, *where).stdout) == []

    dry = json.loads(dlq("replay", "--dry-run", "--json", *where).stdout)
    assert (len(dry["replayed"]), len(dry["skipped"])) == (2, 1)
    replayed = json.loads(dlq("replay", "--json", "--type", REQUEST, *where).stdout)
    assert replayed["replayed"] == [request["id"]]

    [back] = asyncio.run(_read_back(kafka.bootstrap_servers, topics.commands, 1))
    headers = dict(back.headers)
    assert back.key == b"resource-1"
    assert headers["ce_type"] == REQUEST.encode()
    assert headers[REPLAYED_FROM] == request["id"].encode()
    assert not [k for k in headers if k.startswith("dlq_") and k != REPLAYED_FROM]
    assert json.loads(back.value)["quantity"] == 2


def test_a_wrong_prefix_or_since_names_the_fix(kafka: Any) -> None:
    missing = CliRunner().invoke(
        app, ["dlq", "list", "--kafka", kafka.bootstrap_servers, "--topic-prefix", "nope."]
    )
    assert missing.exit_code == 1
    assert "--topic-prefix" in missing.output
    bad = CliRunner().invoke(app, ["dlq", "list", "--since", "yesterday-ish"])
    assert bad.exit_code == 1
    assert "30s, 10m, 2h, 1d" in bad.output


def test_since_reads_durations_ago_and_iso_times() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now=lambda: now) == now - timedelta(minutes=10)
    assert parse_since("1.5h", now=lambda: now) == now - timedelta(hours=1.5)
    assert parse_since("2026-11-30T09:00:00") == datetime(2026, 11, 30, 9, tzinfo=UTC)
