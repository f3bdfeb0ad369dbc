"""Replicas that agree: two gateways, two booking workers and two consumers on the real stack.

One stack for the module (``bookify up --replicas gateway=2,booking=2,consumer=2`` as test
processes), the gateways sharing their rate limit in the session's Redis at the defaults a
user gets (20/s, burst 40). Clients spread their requests over both gateways
(:class:`tests.stack.RoundRobin`), as `bookify load --host a,b` does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from bookify_platform.services import Platform, ServiceName
from loadtests.openmodel import HttpClient, Reply
from shared.mongo import Document
from tests.stack import (
    Api,
    check_ledger,
    free_port_block,
    group_members,
    metric,
    resources_on_every_partition,
    spread_client,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPLICAS: dict[ServiceName, int] = {"gateway": 2, "booking": 2, "consumer": 2}
RATE, BURST = 20, 40  # the gateway's defaults (gateway.config)
STACK_ENV = {
    "BOOKIFY_GATEWAY_RATE_LIMIT_PER_SECOND": str(RATE),
    "BOOKIFY_GATEWAY_RATE_LIMIT_BURST": str(BURST),
}


@pytest.fixture(scope="module")
def replicas(replica_stack: Platform) -> Platform:
    return replica_stack


@pytest.fixture
async def spread(replicas: Platform) -> AsyncIterator[Api]:
    """The public API, each request to the next gateway."""
    async with spread_client(replicas.urls("gateway")) as http:
        yield Api(http)


@pytest.fixture
async def ledger(replicas: Platform, mongo: Any) -> AsyncIterator[Any]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo.uri, tz_aware=True)
    yield client[f"{replicas.config.db_prefix}bookify_booking"]["ledger"]
    await client.close()


# ---------------------------------------------------------------- the race
SEATS, BUYERS = 10, 300


async def test_three_hundred_buyers_over_two_gateways_and_two_workers_get_exactly_ten(
    replicas: Platform, spread: Api, ledger: Any
) -> None:
    resource = await spread.create_resource(capacity=SEATS, name="replica race")
    accepted_before = [
        await metric(url, "bookify_http_requests_total", route="/v1/bookings", status="202")
        for url in replicas.urls("gateway")
    ]

    responses = await asyncio.gather(*(spread.book(resource, f"rr-{i}") for i in range(BUYERS)))

    assert [r.status_code for r in responses] == [202] * BUYERS
    outcomes = await asyncio.gather(
        *(
            spread.wait_terminal(r.json()["id"], f"rr-{i}", within=90)
            for i, r in enumerate(responses)
        )
    )
    statuses = Counter(o["status"] for o in outcomes)
    assert statuses == {"confirmed": SEATS, "rejected": BUYERS - SEATS}
    entries = await ledger.find({"resource_id": resource}).sort("seq", 1).to_list()
    assert check_ledger(entries, SEATS) == []
    decisions = [e for e in entries if e["kind"] in ("confirmed", "rejected")]
    assert {e["booking_id"] for e in decisions} == {r.json()["id"] for r in responses}
    assert entries[-1]["reserved"] == SEATS
    print(f"race over two gateways: {dict(statuses)}, {len(entries)} ledger entries, dense")
    # Both gateways took their share: the race really ran through two processes.
    for url, before in zip(replicas.urls("gateway"), accepted_before, strict=True):
        took = await metric(url, "bookify_http_requests_total", route="/v1/bookings", status="202")
        assert took - before >= BUYERS // 3, url


# ---------------------------------------------------------------- one limit for both
REQUESTS = 400


async def test_one_principal_bursting_over_two_gateways_gets_one_limit(
    replicas: Platform,
) -> None:
    who = Api.auth(f"burst-{uuid.uuid4().hex[:8]}")
    gateways = replicas.urls("gateway")
    errors_before = [await metric(url, "bookify_rate_limit_store_errors_total") for url in gateways]
    # The load generator's own client: each request to the next gateway, and fast
    # enough that the burst is not paced by the test's CPU.
    async with HttpClient(",".join(gateways), max_connections=REQUESTS) as http:
        await http.warm_up("/healthz", connections=REQUESTS // 2)  # no handshakes in the burst
        started = time.monotonic()

        async def send(_: int) -> tuple[Reply, float]:
            reply = await http.get("/v1/resources?limit=1", headers=who)
            return reply, time.monotonic() - started

        answers = await asyncio.gather(*(send(i) for i in range(REQUESTS)))

    first_second = [r for r, at in answers if at <= 1.0]
    accepted = sum(r.status == 200 for r in first_second)
    limited = [r for r, _ in answers if r.status == 429]
    figures = {
        "answered_first_second": len(first_second),
        "accepted_first_second": accepted,
        "accepted": sum(r.status == 200 for r, _ in answers),
        "seconds": round(max(at for _, at in answers), 2),
    }
    print(f"one limit across gateways: {figures}")
    # Fast enough that two limits (one per gateway) would have shown: 2 x (burst + rate).
    assert len(first_second) > BURST + RATE, figures
    assert 0 < accepted <= BURST + RATE, figures
    assert {r.status for r, _ in answers} <= {200, 429}
    assert limited
    for reply in limited[:20]:
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert int(reply.headers["retry-after"]) >= 1
    # Decided by Redis, not by each gateway's fallback bucket.
    for url, before in zip(gateways, errors_before, strict=True):
        assert await metric(url, "bookify_rate_limit_store_errors_total") == before, url


# ---------------------------------------------------------------- a rebalance under load
TRAFFIC_RATE = 25.0  # bookings a second, spread over both gateways
CAPACITY = 40  # per resource: fewer seats than the traffic asks for, so both outcomes occur


@dataclass
class Traffic:
    """Keyed bookings on a fixed schedule over several resources; retried with the same key
    until a 202, so every request has exactly one booking."""

    api: Api
    resources: list[str]
    accepted: dict[str, str] = field(default_factory=dict)  # booking id -> principal
    answers: Counter[str] = field(default_factory=Counter)
    running: bool = True

    async def run(self) -> None:
        sent: list[asyncio.Task[None]] = []
        t0, n = time.monotonic(), 0
        while self.running:
            await asyncio.sleep(max(0.0, t0 + n / TRAFFIC_RATE - time.monotonic()))
            sent.append(asyncio.create_task(self._book(n)))
            n += 1
        await asyncio.gather(*sent)

    async def _book(self, n: int) -> None:
        # Many principals, each far below its rate limit, polls included.
        who, key = f"rb-{n % 200}", str(uuid.uuid4())
        resource = self.resources[n % len(self.resources)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = await self.api.book(resource, who, key=key)
            except httpx.TransportError as exc:
                self.answers[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            self.answers[str(response.status_code)] += 1
            if response.status_code == 202:
                self.accepted[response.json()["id"]] = who
                return
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        self.answers["gave up"] += 1


async def test_a_third_booking_worker_joins_and_leaves_under_traffic_losing_nothing(
    replicas: Platform, spread: Api, ledger: Any
) -> None:
    resources = await resources_on_every_partition(spread, CAPACITY)
    assert await group_members(replicas.config, 2) == 2
    traffic = Traffic(spread, resources)
    task = asyncio.create_task(traffic.run())
    try:
        await until(lambda: len(traffic.accepted) >= 30, "traffic flowing", within=30)

        third = replicas.add_replica("booking", port=free_port_block(1, set()))
        assert await group_members(replicas.config, 3) == 3
        joined_at = len(traffic.accepted)
        await until(lambda: len(traffic.accepted) >= joined_at + 50, "traffic after the join")
        # One partition each, and every partition has traffic: the newcomer decides some.
        deadline = time.monotonic() + 30
        while (third_decided := await metric(third.url, "bookify_bookings_total")) == 0:
            assert time.monotonic() < deadline, "the third worker decided nothing"
            await asyncio.sleep(0.2)

        replicas.remove_replica(third.name)  # SIGTERM: it leaves the group cleanly
        assert await group_members(replicas.config, 2) == 2
        left_at = len(traffic.accepted)
        await until(lambda: len(traffic.accepted) >= left_at + 50, "traffic after the leave")
    finally:
        traffic.running = False
        await task

    assert traffic.answers["gave up"] == 0, traffic.answers
    outcomes = await asyncio.gather(
        *(spread.wait_terminal(b, who, within=90) for b, who in traffic.accepted.items())
    )
    assert all(o["status"] in ("confirmed", "rejected") for o in outcomes)
    problems: list[str] = []
    decided: set[str] = set()
    for resource in resources:
        entries = await ledger.find({"resource_id": resource}).sort("seq", 1).to_list()
        problems += [f"{resource}: {p}" for p in check_ledger(entries, CAPACITY)]
        decided |= {e["booking_id"] for e in entries if e["kind"] in ("confirmed", "rejected")}
        expected = CAPACITY - entries[-1]["reserved"]
        deadline = time.monotonic() + 30  # the views catch up with the ledger
        while (available := await spread.available(resource)) != expected:
            if time.monotonic() > deadline:
                problems.append(f"{resource}: views show {available} available, ledger {expected}")
                break
            await asyncio.sleep(0.2)
    print(
        f"rebalance: {len(traffic.accepted)} accepted, {dict(traffic.answers)}, "
        f"the third worker decided {third_decided:g} before it left"
    )
    # Nothing lost (every 202 decided) and nothing made up (every decision was a 202).
    assert decided == set(traffic.accepted)
    assert problems == []


async def until(condition: Any, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {within:.0f} s"
        await asyncio.sleep(0.1)
