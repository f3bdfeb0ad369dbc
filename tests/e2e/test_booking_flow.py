"""The public contract (DESIGN §2) end to end: gateway, booking and consumer as processes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.stack import Api

pytestmark = pytest.mark.e2e


async def test_a_booking_is_pending_at_once_then_confirmed(api: Api) -> None:
    resource = await api.create_resource(capacity=5)
    accepted = await api.book(resource, "alice", quantity=2)
    assert accepted.status_code == 202
    location = accepted.headers["location"]
    booking_id = location.rsplit("/", 1)[-1]
    right_after = await api.http.get(location, headers=api.auth("alice"))
    assert right_after.status_code == 200
    assert right_after.json()["status"] in {"pending", "confirmed"}
    final = await api.wait_terminal(booking_id, "alice")
    assert final["status"] == "confirmed"
    await asyncio.sleep(0)  # availability is eventually consistent but the view saw the event
    assert await api.available(resource) == 3


async def test_a_sold_out_resource_rejects_with_a_reason(api: Api) -> None:
    resource = await api.create_resource(capacity=1)
    first = await api.book(resource, "bob")
    second = await api.book(resource, "carol")
    assert (first.status_code, second.status_code) == (202, 202)
    assert (await api.wait_terminal(first.json()["id"], "bob"))["status"] == "confirmed"
    rejected = await api.wait_terminal(second.json()["id"], "carol")
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "sold_out"


async def test_cancelling_a_confirmed_booking_returns_its_seats(api: Api) -> None:
    resource = await api.create_resource(capacity=4)
    booking_id = (await api.book(resource, "dave", quantity=3)).json()["id"]
    assert (await api.wait_terminal(booking_id, "dave"))["status"] == "confirmed"
    cancel = await api.http.post(f"/v1/bookings/{booking_id}/cancel", headers=api.auth("dave"))
    assert cancel.status_code == 202
    for _ in range(300):
        if (await api.booking(booking_id, "dave")).json()["status"] == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert (await api.booking(booking_id, "dave")).json()["status"] == "cancelled"
    for _ in range(300):
        if await api.available(resource) == 4:
            break
        await asyncio.sleep(0.1)
    assert await api.available(resource) == 4


async def test_the_same_idempotency_key_gives_the_same_booking(api: Api) -> None:
    resource = await api.create_resource(capacity=10)
    key = str(uuid.uuid4())
    first = await api.book(resource, "erin", quantity=2, key=key)
    again = await api.book(resource, "erin", quantity=2, key=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["location"] == again.headers["location"]
    await api.wait_terminal(first.json()["id"], "erin")
    assert await api.available(resource) == 8  # booked once, not twice
    different = await api.book(resource, "erin", quantity=3, key=key)
    assert different.status_code == 422
    assert different.headers["content-type"].startswith("application/problem+json")


async def test_another_principals_booking_is_not_found(api: Api) -> None:
    resource = await api.create_resource(capacity=3)
    booking_id = (await api.book(resource, "frank")).json()["id"]
    assert (await api.booking(booking_id, "mallory")).status_code == 404
    cancel = await api.http.post(f"/v1/bookings/{booking_id}/cancel", headers=api.auth("mallory"))
    assert cancel.status_code == 404
    assert (await api.wait_terminal(booking_id, "frank"))["status"] == "confirmed"


async def test_no_token_is_401_and_a_token_without_the_scope_is_403(api: Api) -> None:
    resource = await api.create_resource(capacity=3)
    body = {"resource_id": resource, "quantity": 1}
    missing = await api.http.post("/v1/bookings", json=body)
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    read_only = await api.http.post(
        "/v1/bookings", json=body, headers=api.auth("grace", "bookings:read")
    )
    assert read_only.status_code == 403
    not_admin = await api.http.post(
        "/v1/resources", json={"name": "x", "capacity": 1}, headers=api.auth("grace")
    )
    assert not_admin.status_code == 403
