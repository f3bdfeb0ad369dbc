"""Two booking workers deciding the same commands at once (a zombie outside the group)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from bookify_platform.infra.process import free_port
from bookify_platform.services import Platform, PlatformConfig, ServiceProcess
from tests.stack import Api

pytestmark = pytest.mark.chaos

SEATS = 10
BUYERS = 60


@pytest.fixture
def zombie(
    stack: Platform, stack_config: PlatformConfig, tmp_path: Path
) -> Iterator[ServiceProcess]:
    # Another consumer group: Kafka delivers every command to both workers.
    config = dataclasses.replace(
        stack_config,
        ports={**stack_config.ports, "booking": free_port()},
        extra_env={"BOOKIFY_BOOKING_GROUP_ID": "bookify-booking-zombie"},
    )
    worker = ServiceProcess("booking", config, tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def received(metrics_text: str, topic: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("faststream_received_messages_total") and topic in line
    )


async def test_a_zombie_worker_cannot_overbook(
    api: Api, zombie: ServiceProcess, stack: Platform, stack_config: PlatformConfig, mongo: Any
) -> None:
    resource = await api.create_resource(capacity=SEATS)
    responses = await asyncio.gather(*(api.book(resource, f"z-{i}") for i in range(BUYERS)))
    outcomes = await asyncio.gather(
        *(api.wait_terminal(r.json()["id"], f"z-{i}") for i, r in enumerate(responses))
    )
    assert [o["status"] for o in outcomes].count("confirmed") == SEATS

    # Both workers really saw the commands...
    commands = stack_config.topic_prefix + "bookify.commands"
    for worker_url in (zombie.url, stack["booking"].url):
        metrics = (await api.http.get(f"{worker_url}/metrics")).text
        assert received(metrics, commands) >= BUYERS
    # ...and the ledger holds exactly one decision per booking, capacity never exceeded.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.uri)
    try:
        ledger = client[f"{stack_config.db_prefix}bookify_booking"]["ledger"]
        entries = await ledger.find({"resource_id": resource}).sort("seq", 1).to_list()
    finally:
        await client.close()
    decisions = [e for e in entries if e["kind"] in {"confirmed", "rejected"}]
    assert len(decisions) == BUYERS
    assert len({e["booking_id"] for e in decisions}) == BUYERS
    assert max(e["reserved"] for e in entries) == SEATS
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
