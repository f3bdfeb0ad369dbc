"""Push on the real stack: two gateways, each reading bookify.events itself, real Kafka and
FerretDB, streams read over real HTTP as a client reads them (DESIGN section 10).

Booking is slowed by its own fault switch (added latency before each command), so a
booking is still pending when its stream opens and every stream sees the decision arrive.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from bookify_platform.services import Platform, ServiceName
from tests.stack import Api
from tests.support.auth import bearer
from tests.support.sse import events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPLICAS: dict[ServiceName, int] = {"gateway": 2, "booking": 1, "consumer": 1}
DECISION_DELAY_MS = 1500  # booking waits this long before each command
# Only the feed may deliver a decision here, not the pending streams' safety net.
STACK_ENV = {"BOOKIFY_GATEWAY_PUSH_RESYNC_SECONDS": "600"}


@pytest.fixture(scope="module")
def platform(replica_stack: Platform) -> Platform:
    return replica_stack


@pytest.fixture
async def slow_decisions(platform: Platform) -> AsyncIterator[None]:
    """Booking decides each command DECISION_DELAY_MS late, for the test's duration."""
    admin = bearer("push-e2e", "resources:admin")
    async with httpx.AsyncClient(base_url=platform["booking"].url, timeout=10) as http:

        async def set_latency(ms: int) -> None:
            faults = {"latency_ms": ms, "duration_seconds": 120}
            response = await http.put("/admin/faults", json=faults, headers=admin)
            assert response.status_code == 200, response.text

        await set_latency(DECISION_DELAY_MS)
        yield
        await set_latency(0)


def url(api: Api, path: str) -> str:
    return str(api.http.base_url.join(path))


async def book(api: Api, resource_id: str, who: str) -> str:
    response = await api.book(resource_id, who)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.fixture
async def gateways(platform: Platform) -> AsyncIterator[tuple[Api, Api]]:
    first, second = platform.urls("gateway")
    async with (
        httpx.AsyncClient(base_url=first, timeout=30) as a,
        httpx.AsyncClient(base_url=second, timeout=30) as b,
    ):
        yield Api(a), Api(b)


async def test_a_booking_stream_sees_pending_then_confirmed(
    gateways: tuple[Api, Api], slow_decisions: None
) -> None:
    api, _ = gateways
    resource_id = await api.create_resource(capacity=5)
    who = f"push-{uuid.uuid4().hex[:6]}"
    booking_id = await book(api, resource_id, who)

    async with events(url(api, f"/v1/bookings/{booking_id}/events"), who) as stream:
        first = await stream.next()
        assert (first.event, first.id, first.data["status"]) == ("booking", "pending", "pending")
        then = await stream.next()
        assert (then.id, then.data["status"]) == ("confirmed", "confirmed")
    # and the read model agrees
    assert (await api.wait_terminal(booking_id, who))["status"] == "confirmed"


async def test_a_client_of_the_gateway_that_did_not_accept_the_booking_gets_it(
    gateways: tuple[Api, Api], slow_decisions: None
) -> None:
    accepting, other = gateways
    resource_id = await accepting.create_resource(capacity=1)
    who = f"push-{uuid.uuid4().hex[:6]}"
    first = await book(accepting, resource_id, who)
    second = await book(accepting, resource_id, who)  # the one seat is the first's

    async with (
        events(url(other, f"/v1/bookings/{first}/events"), who) as one,
        events(url(other, f"/v1/bookings/{second}/events"), who) as two,
        events(url(other, "/v1/bookings/events"), who) as mine,
        events(url(other, f"/v1/resources/{resource_id}/events"), who) as seats,
    ):
        assert (await seats.next()).data["available"] == 1
        assert [(await one.next()).data["status"] for _ in range(2)] == ["pending", "confirmed"]
        # A rejection is final: the server ends that stream.
        assert await two.statuses_until_end() == ["pending", "rejected"]
        changes = {(await mine.next()).id for _ in range(2)}
        assert changes == {f"{first}:confirmed", f"{second}:rejected"}
        assert (await seats.next()).data["available"] == 0


async def test_a_client_whose_gateway_restarted_reconnects_with_last_event_id_and_misses_nothing(
    platform: Platform, gateways: tuple[Api, Api], slow_decisions: None
) -> None:
    api, _ = gateways
    resource_id = await api.create_resource(capacity=5)
    who = f"push-{uuid.uuid4().hex[:6]}"
    gateway = platform.replicas("gateway")[1]
    booking_id = await book(api, resource_id, who)
    stream_url = f"{gateway.url}/v1/bookings/{booking_id}/events"

    async with events(stream_url, who) as stream:
        first = await stream.next()
        assert first.id == "pending"
        gateway.kill()  # mid-stream, before the decision
        with pytest.raises((httpx.HTTPError, EOFError)):
            await stream.next()
    # The decision is taken while that gateway is down.
    assert (await api.wait_terminal(booking_id, who))["status"] == "confirmed"
    gateway.start()
    await asyncio.to_thread(gateway.wait_ready)

    async with events(stream_url, who, last_event_id=first.id) as again:
        missed = await again.next()
        assert (missed.id, missed.data["status"]) == ("confirmed", "confirmed")
        cancel = await api.http.post(f"/v1/bookings/{booking_id}/cancel", headers=Api.auth(who))
        assert cancel.status_code == 202, cancel.text
        assert await again.statuses_until_end() == ["cancelled"]
