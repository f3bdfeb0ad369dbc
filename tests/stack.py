"""Fixtures that run the three services as real processes against the test Kafka and Mongo.

Registered from tests/conftest.py. One stack per session, isolated from anything else on the
broker and server by a unique topic prefix and database prefix; each test creates its own
resources, so tests do not see each other's seats.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import DefaultPartitioner

from bookify_platform.infra.process import free_ports, port_is_free
from bookify_platform.services import SERVICES, Platform, PlatformConfig, ServiceName
from shared.mongo import Document
from tests.otlp import OtlpReceiver
from tests.support.auth import bearer

TERMINAL = {"confirmed", "rejected", "cancelled"}
PARTITIONS = 3  # topic_partitions' default: the most booking workers that get work


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """Every span the stack's services export (they point their OTLP exporters here)."""
    with OtlpReceiver() as receiver:
        yield receiver


def _ephemeral_low() -> int:
    """Where the kernel starts handing out ports to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(count: int, taken: set[int], attempts: int = 200) -> int:
    """The first of ``count`` consecutive ports free right now and not in ``taken`` (which
    it extends): each service's replicas' ports.

    Below the ephemeral range: a block in it may be taken by some client's outgoing
    connection (to Kafka, say) between this check and the server's bind.
    """
    rng = random.Random()
    low, high = 20_000, max(20_000 + count, _ephemeral_low() - count)
    for _ in range(attempts):
        block = range(first := rng.randrange(low, high), first + count)
        if all(p not in taken and port_is_free(p) for p in block):
            taken.update(block)
            return first
    raise RuntimeError(f"no {count} consecutive free ports in {attempts} tries")


def new_stack_config(
    kafka: Any,
    mongo: Any,
    otlp: OtlpReceiver,
    *,
    redis: Any = None,
    replicas: Mapping[ServiceName, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> PlatformConfig:
    """A stack of its own: free ports, its own topics and its own databases.

    With ``redis`` (the session fixture) the gateways share their rate limit there, as
    `bookify up` runs them; without, each keeps its own (memory://, one gateway only).
    ``replicas`` runs several processes of a service, on consecutive free ports.
    """
    counts = dict(replicas or {})
    if any(n > 1 for n in counts.values()):
        taken: set[int] = set()
        ports = {name: free_port_block(counts.get(name, 1), taken) for name in SERVICES}
    else:
        gateway, booking, consumer = free_ports(3)
        ports = {"gateway": gateway, "booking": booking, "consumer": consumer}
    run = uuid.uuid4().hex[:8]
    return PlatformConfig(
        kafka_bootstrap=kafka.bootstrap_servers,
        mongo_uri=mongo.uri,
        ports=ports,
        topic_prefix=f"e2e-{run}.",
        db_prefix=f"e2e_{run}_",
        environment="test",
        replicas=counts,
        rate_limit_storage=redis.url if redis is not None else "memory://",
        # Tests drive a few principals far harder than any person would.
        extra_env={
            "BOOKIFY_GATEWAY_RATE_LIMIT_PER_SECOND": "10000",
            "BOOKIFY_GATEWAY_RATE_LIMIT_BURST": "10000",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
            **(extra_env or {}),
        },
    )


@pytest.fixture(scope="session")
def stack_config(kafka: Any, mongo: Any, redis: Any, otlp: OtlpReceiver) -> PlatformConfig:
    return new_stack_config(kafka, mongo, otlp, redis=redis)


@pytest.fixture(scope="session")
def stack(
    stack_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    run_dir: Path = tmp_path_factory.mktemp("stack")
    with Platform(stack_config, run_dir) as platform:
        yield platform


@pytest.fixture(scope="module")
def replica_stack(
    request: pytest.FixtureRequest,
    kafka: Any,
    mongo: Any,
    redis: Any,
    otlp: OtlpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    """A stack of the requesting module's own: its ``REPLICAS`` processes per service, its
    ``STACK_ENV`` (if any) added to the services' environment, the gateways sharing their
    rate limit in the session's Redis."""
    module = request.module
    config = new_stack_config(
        kafka,
        mongo,
        otlp,
        redis=redis,
        replicas=module.REPLICAS,
        extra_env=getattr(module, "STACK_ENV", None),
    )
    with Platform(config, tmp_path_factory.mktemp(module.__name__.rsplit(".", 1)[-1])) as platform:
        yield platform


@pytest.fixture(scope="module")
def load_stack(
    kafka: Any, mongo: Any, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """A stack for load tests alone: their thousands of bookings, injected faults and
    metrics stay out of the views, DLQ and /metrics the other tests assert on."""
    config = new_stack_config(kafka, mongo, otlp)
    with Platform(config, tmp_path_factory.mktemp("load-stack")) as platform:
        yield platform


class RoundRobin(httpx.AsyncBaseTransport):
    """Sends each request to the next of ``urls``, path and all: a client spreading its
    requests over several gateways, as `bookify load --host a,b` does (no proxy between)."""

    def __init__(self, urls: Sequence[str], **transport: Any) -> None:
        if not urls:
            raise ValueError("no gateway URL to send to")
        self._targets = itertools.cycle([httpx.URL(url) for url in urls])
        self._inner = httpx.AsyncHTTPTransport(**transport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = next(self._targets)
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["host"] = request.url.netloc.decode()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def spread_client(urls: Sequence[str], *, timeout: float = 30) -> httpx.AsyncClient:
    """An httpx client whose every request goes to the next gateway of ``urls``."""
    # Idle connections expire before uvicorn's 5 s keep-alive timeout (see the api fixture).
    transport = RoundRobin(urls, limits=httpx.Limits(max_connections=200, keepalive_expiry=2))
    return httpx.AsyncClient(base_url=urls[0], transport=transport, timeout=timeout)


@dataclass
class Api:
    """A thin client for the public API, acting as one principal or another."""

    http: httpx.AsyncClient

    @staticmethod
    def auth(sub: str, scope: str = "bookings:read bookings:write") -> dict[str, str]:
        return bearer(sub, scope)

    async def create_resource(self, capacity: int, name: str = "e2e hall") -> str:
        response = await self.http.post(
            "/v1/resources",
            json={"name": name, "capacity": capacity},
            headers=self.auth("admin", "resources:admin bookings:read"),
        )
        assert response.status_code == 202, response.text
        resource_id = response.headers["location"].rsplit("/", 1)[-1]
        await self.wait_resource_visible(resource_id)
        return resource_id

    async def wait_resource_visible(self, resource_id: str, within: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            response = await self.get(f"/v1/resources/{resource_id}", "admin")
            body: dict[str, Any] = response.json()
            if response.status_code == 200 and body.get("updated_at"):
                return body
            assert time.monotonic() < deadline, f"resource {resource_id} never became visible"
            await asyncio.sleep(0.1)

    async def book(
        self, resource_id: str, who: str, quantity: int = 1, key: str | None = None
    ) -> httpx.Response:
        """POST a booking the way a careful client does: with an Idempotency-Key, so a request
        whose connection dropped can be sent again without booking twice."""
        headers = {**self.auth(who), "Idempotency-Key": key or str(uuid.uuid4())}
        body = {"resource_id": resource_id, "quantity": quantity}
        for attempt in range(3):
            try:
                return await self.http.post("/v1/bookings", json=body, headers=headers)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def get(self, path: str, who: str) -> httpx.Response:
        """A GET that rides out a dropped keep-alive connection (safe: GET is idempotent)."""
        for attempt in range(3):
            try:
                return await self.http.get(path, headers=self.auth(who))
            except (httpx.ReadError, httpx.RemoteProtocolError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def booking(self, booking_id: str, who: str) -> httpx.Response:
        return await self.get(f"/v1/bookings/{booking_id}", who)

    async def wait_terminal(self, booking_id: str, who: str, within: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + within
        pause = 0.05
        while True:
            response = await self.booking(booking_id, who)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"booking {booking_id} still {body['status']}"
            pause = min(pause * 2, 0.5)  # many waiters must not drown the gateway in polls
            await asyncio.sleep(pause)

    async def available(self, resource_id: str) -> int:
        response = await self.get(f"/v1/resources/{resource_id}", "admin")
        assert response.status_code == 200, response.text
        return int(response.json()["available"])


@pytest.fixture
async def api(stack: Platform) -> AsyncIterator[Api]:
    # Expire idle connections well before uvicorn's 5 s keep-alive timeout, so the client
    # never reuses a connection the server is closing at that very moment.
    limits = httpx.Limits(max_connections=100, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=stack["gateway"].url, timeout=30, limits=limits) as http:
        yield Api(http)


# ---------------------------------------------------------------- replicas under traffic
async def metric(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``, from ``url``/metrics."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def check_ledger(entries: list[Document], capacity: int) -> list[str]:
    """Dense seqs, every booking decided once, seats never above capacity."""
    problems = []
    seqs = [e["seq"] for e in entries]
    if seqs != list(range(1, len(entries) + 1)):
        problems.append(f"seqs are not 1..{len(entries)}: {seqs[:30]}")
    decided = Counter(e["booking_id"] for e in entries if e["kind"] in ("confirmed", "rejected"))
    if twice := [b for b, n in decided.items() if n > 1]:
        problems.append(f"decided more than once: {twice[:10]}")
    if over := [e["seq"] for e in entries if not 0 <= e["reserved"] <= capacity]:
        problems.append(f"entries reserving more than {capacity} seats: {over[:10]}")
    return problems


async def resources_on_every_partition(
    api: Api, capacity: int, partitions: int = PARTITIONS
) -> list[str]:
    """Resources (created through the API) whose commands land on every partition: whichever
    worker a rebalance gives a partition to gets traffic to decide."""
    partitioner = DefaultPartitioner()
    found: dict[int, str] = {}
    for _ in range(30):
        resource = await api.create_resource(capacity=capacity, name="rebalance")
        found.setdefault(partitioner(resource.encode(), list(range(partitions)), []), resource)
        if len(found) == partitions:
            return list(found.values())
    raise AssertionError(f"30 resources covered only partitions {sorted(found)}")


async def group_members(config: PlatformConfig, expected: int, within: float = 60.0) -> int:
    """Wait until booking's consumer group is stable with ``expected`` members, each assigned
    partitions; the count it settled on."""
    group = f"{config.topic_prefix}bookify-booking"
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while True:
            [response] = await admin.describe_consumer_groups([group])
            [described] = response.groups
            state, members = described[2], described[5]
            assigned = [
                m for m in members if ConsumerProtocolMemberAssignment.decode(m[4]).partitions()
            ]
            if state == "Stable" and len(assigned) == len(members) == expected:
                return expected
            assert time.monotonic() < deadline, (
                f"{group}: {state}, {len(members)} members, {len(assigned)} assigned; "
                f"expected {expected}"
            )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
