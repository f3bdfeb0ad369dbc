"""The gateway against real Kafka and a real MongoDB-wire server (no fakes)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import TracerProvider
from pymongo import AsyncMongoClient

from gateway.config import GatewaySettings
from shared.events import COMMAND_TYPES, CreateResource, RequestBooking, decode
from shared.mongo import Document
from shared.readmodel import BOOKINGS, RESOURCES

pytestmark = pytest.mark.integration

# Integration test directories are not packages (a tests/integration/gateway package
# would shadow the real ``gateway``), so helpers come from conftest as fixtures.
Tokens = Callable[..., dict[str, str]]
GatewayFactory = Callable[..., Any]


async def read_commands(settings: GatewaySettings, count: int, within: float = 30.0) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topics.commands,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


ADMIN_SCOPES = "resources:admin bookings:read"


async def create_resource(gateway: httpx.AsyncClient, tokens: Tokens, capacity: int = 10) -> UUID:
    response = await gateway.post(
        "/v1/resources",
        json={"name": "Hall", "capacity": capacity},
        headers=tokens("admin", ADMIN_SCOPES),
    )
    assert response.status_code == 202, response.text
    return UUID(response.json()["id"])


async def test_a_booking_lands_on_the_commands_topic_as_a_cloudevent_keyed_by_resource(
    gateway_settings: GatewaySettings, gateway_factory: GatewayFactory, tokens: Tokens
) -> None:
    provider = TracerProvider()
    async with gateway_factory(gateway_settings, tracer_provider=provider) as gateway:
        resource_id = await create_resource(gateway, tokens)
        response = await gateway.post(
            "/v1/bookings",
            json={"resource_id": str(resource_id), "quantity": 2},
            headers=tokens("alice"),
        )
    assert response.status_code == 202, response.text
    booking_id = UUID(response.json()["id"])

    create_record, booking_record = await read_commands(gateway_settings, 2)

    assert create_record.key == booking_record.key == str(resource_id).encode()
    headers = {k: v.decode() for k, v in booking_record.headers}
    assert headers["ce_type"] == RequestBooking.ce_type
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_source"] == "bookify/gateway"
    assert headers["content-type"] == "application/json"
    assert datetime.fromisoformat(headers["ce_time"]).tzinfo is not None
    assert "traceparent" in headers
    command = decode(dict(booking_record.headers), booking_record.value, COMMAND_TYPES)
    assert isinstance(command, RequestBooking)
    assert headers["ce_id"] == str(command.command_id)
    assert headers["correlation_id"] == str(command.command_id)  # in FastStream's logs
    assert (command.booking_id, command.resource_id, command.quantity) == (
        booking_id,
        resource_id,
        2,
    )
    assert command.principal == "alice"
    created = decode(dict(create_record.headers), create_record.value, COMMAND_TYPES)
    assert isinstance(created, CreateResource)
    assert created.resource_id == resource_id


async def test_get_right_after_202_is_pending_and_a_new_resource_is_fully_available(
    gateway: httpx.AsyncClient, tokens: Tokens
) -> None:
    resource_id = await create_resource(gateway, tokens, capacity=7)
    resource = await gateway.get(f"/v1/resources/{resource_id}", headers=tokens())
    accepted = await gateway.post(
        "/v1/bookings",
        json={"resource_id": str(resource_id), "quantity": 1},
        headers=tokens("alice"),
    )

    booking = await gateway.get(accepted.headers["location"], headers=tokens("alice"))
    someone_else = await gateway.get(accepted.headers["location"], headers=tokens("mallory"))

    assert (resource.status_code, resource.json()["available"]) == (200, 7)
    assert booking.status_code == 200, booking.text
    assert booking.json()["status"] == "pending"
    assert someone_else.status_code == 404


async def test_idempotency_holds_in_mongo_even_for_concurrent_duplicates(
    gateway: httpx.AsyncClient, gateway_settings: GatewaySettings, tokens: Tokens
) -> None:
    resource_id = await create_resource(gateway, tokens)
    body = {"resource_id": str(resource_id), "quantity": 3}
    headers = tokens("alice") | {"Idempotency-Key": "order-42"}

    responses = await asyncio.gather(
        *(gateway.post("/v1/bookings", json=body, headers=headers) for _ in range(4))
    )
    changed = await gateway.post("/v1/bookings", json=body | {"quantity": 4}, headers=headers)

    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.text for r in responses}) == 1
    assert changed.status_code == 422
    assert changed.headers["content-type"] == "application/problem+json"
    bookings = [
        r for r in await read_commands(gateway_settings, 5, within=5)
        if dict(r.headers)["ce_type"] == RequestBooking.ce_type.encode()
    ]  # fmt: skip
    # Duplicates that raced the original may republish *the same* command (same ids),
    # which the booking service dedupes; never a second booking.
    assert {decode(dict(r.headers), r.value).message_id for r in bookings} == {
        decode(dict(bookings[0].headers), bookings[0].value).message_id
    }


async def test_a_retried_key_replays_the_first_202_from_what_mongo_stored(
    gateway: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    mongo_client: AsyncMongoClient[Document],
    tokens: Tokens,
) -> None:
    resource_id = await create_resource(gateway, tokens)
    body = {"resource_id": str(resource_id), "quantity": 2}
    headers = tokens("alice") | {"Idempotency-Key": "order-43"}

    first = await gateway.post("/v1/bookings", json=body, headers=headers)
    retry = await gateway.post("/v1/bookings", json=body, headers=headers)

    assert first.status_code == retry.status_code == 202, retry.text
    assert retry.text == first.text  # accepted_at survives MongoDB's millisecond precision
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    # Answered is told by the accepted record: the reservation is written once, never updated.
    [reservation] = await mongo_client[gateway_settings.db_name]["idempotency"].find().to_list()
    assert reservation["entity_id"] == first.json()["id"]
    assert "response" not in reservation


async def test_reads_come_from_the_consumers_views(
    gateway: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    mongo_client: AsyncMongoClient[Document],
    tokens: Tokens,
) -> None:
    views = mongo_client[gateway_settings.views_db]
    now = datetime.now(UTC)
    resource_ids = sorted(str(uuid4()) for _ in range(3))
    await views[RESOURCES].insert_many(
        [
            {"_id": rid, "name": f"R{i}", "capacity": 5, "available": 5 - i, "version": i + 1,
             "created_at": now, "updated_at": now}
            for i, rid in enumerate(resource_ids)
        ]
    )  # fmt: skip
    booking_id = str(uuid4())
    await views[BOOKINGS].insert_one(
        {"_id": booking_id, "principal": "alice", "resource_id": resource_ids[0], "quantity": 1,
         "status": "rejected", "reason": "sold_out", "accepted_at": now, "updated_at": now}
    )  # fmt: skip

    first = (await gateway.get("/v1/resources?limit=2", headers=tokens())).json()
    second = (
        await gateway.get(f"/v1/resources?limit=2&cursor={first['next_cursor']}", headers=tokens())
    ).json()
    booking = await gateway.get(f"/v1/bookings/{booking_id}", headers=tokens("alice"))
    cancel = await gateway.post(f"/v1/bookings/{booking_id}/cancel", headers=tokens("alice"))

    assert [r["id"] for r in first["items"] + second["items"]] == resource_ids
    assert second["next_cursor"] is None
    assert booking.json()["status"] == "rejected"
    assert booking.json()["reason"] == "sold_out"
    assert cancel.status_code == 409


async def test_a_resource_seen_only_through_bookings_is_bookable_but_not_shown(
    gateway: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    mongo_client: AsyncMongoClient[Document],
    tokens: Tokens,
) -> None:
    # What the consumer stores when a booking is projected before its ResourceCreated.
    resource_id = str(uuid4())
    await mongo_client[gateway_settings.views_db][RESOURCES].insert_one(
        {"_id": resource_id, "name": None, "capacity": None, "available": 3, "version": 2,
         "created_at": None, "updated_at": datetime.now(UTC)}
    )  # fmt: skip

    resource = await gateway.get(f"/v1/resources/{resource_id}", headers=tokens())
    listed = (await gateway.get("/v1/resources", headers=tokens())).json()
    booking = await gateway.post(
        "/v1/bookings", json={"resource_id": resource_id, "quantity": 1}, headers=tokens("alice")
    )

    assert resource.status_code == 404, resource.text  # not created yet, not accepted here
    assert listed == {"items": [], "next_cursor": None}
    assert booking.status_code == 202, booking.text


async def test_readyz_is_200_with_kafka_and_mongo_up(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")

    assert response.status_code == 200, response.text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens here once the socket is closed


async def test_with_kafka_unreachable_the_gateway_starts_and_writes_are_503(
    gateway_settings: GatewaySettings,
    mongo_client: AsyncMongoClient[Document],
    gateway_factory: GatewayFactory,
    tokens: Tokens,
) -> None:
    settings = gateway_settings.model_copy(
        update={
            "kafka_bootstrap_servers": f"127.0.0.1:{closed_port()}",
            "kafka_connect_timeout_seconds": 2.0,
            "publish_timeout_seconds": 3.0,
        }
    )
    resource_id = str(uuid4())
    now = datetime.now(UTC)
    await mongo_client[settings.views_db][RESOURCES].insert_one(
        {"_id": resource_id, "name": "R", "capacity": 5, "available": 5, "version": 1,
         "created_at": now, "updated_at": now}
    )  # fmt: skip

    started = time.monotonic()
    async with gateway_factory(settings) as gateway:
        startup = time.monotonic() - started
        ready = await gateway.get("/readyz")
        booking = await gateway.post(
            "/v1/bookings", json={"resource_id": resource_id, "quantity": 1}, headers=tokens()
        )
        resource = await gateway.post(
            "/v1/resources",
            json={"name": "x", "capacity": 1},
            headers=tokens("admin", ADMIN_SCOPES),
        )
        health = await gateway.get("/healthz")

    assert startup < 15
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"mongodb": True, "kafka": False}
    for response in (booking, resource):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
    assert health.status_code == 200
    accepted = mongo_client[settings.db_name]["accepted"]
    assert await accepted.count_documents({}) == 0
