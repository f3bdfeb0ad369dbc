"""The shared rate limit on a real redis-server: one bucket per principal for every gateway, and
what happens when Redis stops answering (fail open to the instance's own bucket, then back)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bookify_platform.infra import LocalInfra, Service, free_ports
from gateway.config import GatewaySettings
from gateway.ratelimit import SharedLimiter, build_limiter

pytestmark = pytest.mark.integration

RATE, BURST = 10.0, 20
REDIS_ONLY: tuple[Service, ...] = ("redis",)
Tokens = Callable[..., dict[str, str]]
GatewayFactory = Callable[..., Any]


def shared(url: str, *, prefix: str = "bookify", timeout: float = 0.2) -> SharedLimiter:
    limiter = build_limiter(
        url,
        rate_per_second=RATE,
        burst=BURST,
        timeout=timeout,
        retry_after_error=0.2,
        key_prefix=prefix,
        registry=CollectorRegistry(),
    )
    assert isinstance(limiter, SharedLimiter)
    return limiter


@pytest.fixture
async def gateways(redis: Any) -> AsyncIterator[tuple[SharedLimiter, SharedLimiter]]:
    """Two gateways' limiters on the session's Redis, each with its own connection pool,
    started as the gateway's lifespan starts them. A timeout no busy test machine reaches:
    these tests are about the shared count, and a fallback would hide it (see below)."""
    one, two = shared(redis.url, timeout=10.0), shared(redis.url, timeout=10.0)
    await one.start()
    await two.start()
    yield one, two
    await one.close()
    await two.close()


def principal() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def test_two_gateways_racing_admit_one_burst_between_them(
    gateways: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, two = gateways
    who = principal()

    started = time.monotonic()
    waits = await asyncio.gather(
        *(((one if i % 2 else two).acquire(who)) for i in range(10 * BURST))
    )
    refilled = math.ceil(RATE * (time.monotonic() - started))  # tokens that came meanwhile

    allowed = sum(w == 0.0 for w in waits)
    assert BURST <= allowed <= BURST + refilled  # atomic in Redis: one bucket, not two
    assert not one.degraded
    assert not two.degraded
    assert all(0 < w <= 1 / RATE for w in waits if w > 0)  # until the next token


async def test_a_redis_that_lost_its_scripts_is_given_them_again(
    gateways: tuple[SharedLimiter, SharedLimiter], redis: Any
) -> None:
    one, _ = gateways
    client = Redis.from_url(redis.url)
    try:
        await client.script_flush()  # what a restarted Redis has
    finally:
        await client.aclose()

    assert await one.acquire(principal()) == 0.0
    assert not one.degraded  # decided by Redis, not by the fallback


async def test_a_refused_principal_is_admitted_again_when_the_window_slides(
    gateways: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, two = gateways
    who = principal()
    for _ in range(BURST):
        assert await one.acquire(who) == 0.0
    wait = await two.acquire(who)
    assert wait > 0

    await asyncio.sleep(wait + 0.05)  # what Retry-After told the client, then once more

    assert await two.acquire(who) == 0.0


async def test_prefixes_keep_tenants_apart(redis: Any) -> None:
    tenant_a, tenant_b = shared(redis.url, prefix="a.bookify"), shared(redis.url, prefix="b")
    who = principal()
    try:
        for _ in range(BURST):
            await tenant_a.acquire(who)
        assert await tenant_a.acquire(who) > 0
        assert await tenant_b.acquire(who) == 0.0
    finally:
        await tenant_a.close()
        await tenant_b.close()


# ---------------------------------------------------------------- Redis frozen, then back
@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfra]:
    """A redis-server of this test alone, to freeze (the session's serves other tests)."""
    [port] = free_ports(1)
    with LocalInfra(
        tmp_path_factory.mktemp("own-redis"), redis_port=port, services=REDIS_ONLY, attached=True
    ) as infra:
        infra.start()
        yield infra


async def test_a_frozen_redis_fails_open_to_the_own_bucket_and_heals(
    own_redis: LocalInfra,
) -> None:
    url = own_redis.status().services["redis"].endpoint
    assert url is not None
    limiter = shared(url, timeout=0.1)
    await limiter.start()
    who = principal()
    process = own_redis.process("redis")
    try:
        assert await limiter.acquire(who) == 0.0
        os.kill(process.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(2):  # bounded by the timeout, not by Redis
                waits = [await limiter.acquire(who) for _ in range(BURST + 1)]
            assert limiter.degraded
            # Own bucket: the burst, then a refusal: open, but never unlimited.
            assert waits[:BURST] == [0.0] * BURST
            assert waits[BURST] > 0
        finally:
            os.kill(process.pid, signal.SIGCONT)
        deadline = asyncio.get_running_loop().time() + 10
        while limiter.degraded:  # Redis is tried again every retry_after_error (0.2 s)
            assert asyncio.get_running_loop().time() < deadline, "never back on Redis"
            await asyncio.sleep(0.05)
            await limiter.acquire(principal())
    finally:
        await limiter.close()


# ---------------------------------------------------------------- through HTTP
async def test_two_gateway_apps_share_the_limit_and_answer_429_with_retry_after(
    gateway_settings: GatewaySettings,
    gateway_factory: GatewayFactory,
    tokens: Tokens,
    redis: Any,
) -> None:
    settings = gateway_settings.model_copy(
        update={
            "rate_limit_storage": redis.url,
            "rate_limit_per_second": RATE,
            "rate_limit_burst": BURST,
        }
    )
    headers = tokens(principal())
    async with gateway_factory(settings) as one, gateway_factory(settings) as two:
        started = time.monotonic()
        responses = [
            await (one if i % 2 else two).get("/v1/resources?limit=1", headers=headers)
            for i in range(2 * BURST)
        ]
        refilled = math.ceil(RATE * (time.monotonic() - started))

    statuses = [r.status_code for r in responses]
    assert BURST <= statuses.count(200) <= BURST + refilled, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == len(responses) - statuses.count(200)
    assert refilled < BURST  # so some were refused: the limit is one, not one per gateway
    for response in limited:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["status"] == 429
