"""Valid messages that keep failing end terminal, and `bookify dlq replay` heals the views.

The fault switch makes every message *poison* (it fails on every attempt, so it exhausts
its retries and is dead-lettered) in booking or in the consumer for a while, then is
switched off. Each test proves the fault landed by the service's own dead-letter counter.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from bookify.cli import app
from bookify_platform.services import Platform, PlatformConfig
from tests.stack import Api
from tests.support.auth import bearer

pytestmark = pytest.mark.chaos

BOOKINGS = 3


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def dead_letters(service: Any) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{service.url}/metrics")).text
    return sample(text, "bookify_dlq_messages_total", {"service": service.name})


async def wait_dead_letters(service: Any, at_least: float, within: float = 60) -> None:
    """Until the service says it dead-lettered ``at_least`` records (the fault landed)."""
    deadline = time.monotonic() + within
    while (seen := await dead_letters(service)) < at_least:
        assert time.monotonic() < deadline, f"{service.name}: {seen} dead letters, not {at_least}"
        await asyncio.sleep(0.2)


async def switch_faults(service: Any, settings: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        response = await http.put(
            "/admin/faults", json=settings, headers=bearer("chaos", "resources:admin")
        )
    assert response.status_code == 200, response.text


async def book_while_poisoned(api: Api, service: Any, resource: str, who: str) -> list[str]:
    """Book with every message of ``service`` poison, until it dead-lettered them all."""
    before = await dead_letters(service)
    await switch_faults(service, {"poison_rate": 1.0})
    try:
        booked = await book(api, resource, who)
        await wait_dead_letters(service, before + BOOKINGS)
    finally:
        await switch_faults(service, {})
    return booked


async def ledger_head(mongo: Any, config: PlatformConfig, resource: str) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.uri)
    try:
        ledger = client[f"{config.db_prefix}bookify_booking"]["ledger"]
        entries = await ledger.find({"resource_id": resource}).to_list()
    finally:
        await client.close()
    return max(entries, key=lambda e: e["seq"])


async def book(api: Api, resource: str, who: str) -> list[str]:
    responses = [await api.book(resource, f"{who}-{i}") for i in range(BOOKINGS)]
    assert [r.status_code for r in responses] == [202] * BOOKINGS
    return [r.json()["id"] for r in responses]


async def test_a_request_booking_kept_failing_on_is_rejected_and_takes_no_seat(
    api: Api, stack: Platform, stack_config: PlatformConfig, mongo: Any
) -> None:
    resource = await api.create_resource(capacity=BOOKINGS)
    failed = await book_while_poisoned(api, stack["booking"], resource, "poisoned")

    # Terminal without anyone's help: settled as rejected, nothing held.
    for i, booking_id in enumerate(failed):
        outcome = await api.wait_terminal(booking_id, f"poisoned-{i}")
        assert (outcome["status"], outcome["reason"]) == ("rejected", "processing_failed")
    # Every seat is still there for the next buyers.
    healthy = await book(api, resource, "healthy")
    for i, booking_id in enumerate(healthy):
        assert (await api.wait_terminal(booking_id, f"healthy-{i}"))["status"] == "confirmed"
    head = await ledger_head(mongo, stack_config, resource)
    assert (head["reserved"], head["capacity"]) == (BOOKINGS, BOOKINGS)
    assert await api.available(resource) == 0


async def test_events_the_views_kept_failing_on_wait_in_the_dlq_and_a_replay_heals_them(
    api: Api, stack: Platform, stack_config: PlatformConfig, mongo: Any
) -> None:
    capacity = BOOKINGS + 2
    resource = await api.create_resource(capacity=capacity)
    views = stack["consumer"]
    since = datetime.now(UTC)
    decided = await book_while_poisoned(api, views, resource, "unseen")

    # Decided in the ledger, never shown: the events are in the DLQ, not lost.
    head = await ledger_head(mongo, stack_config, resource)
    assert head["reserved"] == BOOKINGS
    statuses = [
        (await api.booking(b, f"unseen-{i}")).json()["status"] for i, b in enumerate(decided)
    ]
    assert statuses == ["pending"] * BOOKINGS

    where = ["--kafka", stack_config.kafka_bootstrap, "--topic-prefix", stack_config.topic_prefix]
    replay = ["dlq", "replay", "--since", since.isoformat(), "--type", CONFIRMED, *where]
    await replay_all(replay)
    outcomes = [await api.wait_terminal(b, f"unseen-{i}", within=60) for i, b in enumerate(decided)]
    assert [o["status"] for o in outcomes] == ["confirmed"] * BOOKINGS
    assert await api.available(resource) == capacity - head["reserved"]  # views == ledger

    # Again: the consumer sees every event a second time and changes nothing.
    duplicates = await seen_again(views)
    await replay_all(replay)
    deadline = time.monotonic() + 60
    while await seen_again(views) < duplicates + BOOKINGS:
        assert time.monotonic() < deadline, "the second replay never reached the consumer"
        await asyncio.sleep(0.2)
    again = [(await api.booking(b, f"unseen-{i}")).json() for i, b in enumerate(decided)]
    assert again == outcomes
    assert await api.available(resource) == capacity - head["reserved"]


CONFIRMED = "bookify.booking.confirmed.v1"


async def replay_all(args: list[str]) -> None:
    # The command runs its own event loop, so it runs in a thread of its own here.
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert f"replayed {BOOKINGS} dead letter(s)" in result.output


async def seen_again(views: Any) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{views.url}/metrics")).text
    labels = {"type": "BookingConfirmed", "outcome": "duplicate"}
    return sample(text, "bookify_consumer_events_total", labels)
