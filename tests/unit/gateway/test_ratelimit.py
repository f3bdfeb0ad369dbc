"""The shared rate limit's logic, on a store kept in this process (Redis: integration tests).

Two ``SharedLimiter``s over one store are two gateways over one Redis; a store that raises or
hangs is Redis down or frozen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.ratelimit import (
    RateLimiter,
    RateLimitMetrics,
    SharedLimiter,
    TokenBucketLimiter,
    build_limiter,
)
from shared.urls import redact_url
from tests.support.clock import FakeClock

RATE, BURST = 5.0, 10


class FlakyBuckets:
    """What Redis keeps, in memory (the same buckets the fallback uses), switchable to fail or
    to hang like a lost Redis. Records each round trip's principals."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.buckets = TokenBucketLimiter(RATE, BURST, clock=(clock or FakeClock()).monotonic)
        self.down = False
        self.hang = False
        self.round_trips: list[list[str]] = []

    @property
    def calls(self) -> int:
        return len(self.round_trips)

    async def take(self, principals: Sequence[str]) -> list[float]:
        self.round_trips.append(list(principals))
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise ConnectionError("Connection refused")
        return [self.buckets.take(p) for p in principals]

    async def start(self) -> None:
        self.round_trips.append([])
        if self.hang:
            await asyncio.sleep(3600)

    async def close(self) -> None:
        return None


def limiter(
    store: FlakyBuckets,
    *,
    clock: FakeClock | None = None,
    registry: CollectorRegistry | None = None,
    timeout: float = 0.05,
) -> SharedLimiter:
    clock = clock or FakeClock()
    return SharedLimiter(
        store,
        fallback=TokenBucketLimiter(RATE, BURST, clock=clock.monotonic),
        metrics=RateLimitMetrics(registry or CollectorRegistry()),
        timeout=timeout,
        retry_after_error=1.0,
        clock=clock.monotonic,
    )


def store_errors(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("bookify_rate_limit_store_errors_total") or 0.0


async def test_the_burst_is_allowed_then_refused_with_a_wait() -> None:
    shared = limiter(FlakyBuckets())

    waits = [await shared.acquire("alice") for _ in range(BURST + 1)]

    assert waits[:BURST] == [0.0] * BURST
    assert waits[BURST] == pytest.approx(1 / RATE)  # the next token


async def test_checks_that_arrive_together_share_one_round_trip() -> None:
    store = FlakyBuckets()
    shared = limiter(store)

    waits = await asyncio.gather(*(shared.acquire(f"p{i % 3}") for i in range(60)))

    assert store.calls == 1  # all queued before the first round trip went out
    assert store.round_trips[0] == [f"p{i % 3}" for i in range(60)]  # in arrival order
    assert sum(w == 0.0 for w in waits) == 3 * BURST


async def test_two_gateways_over_one_store_share_one_limit() -> None:
    store = FlakyBuckets()
    one, two = limiter(store), limiter(store)

    allowed = 0
    for i in range(4 * BURST):  # alternating, as a round-robin front would
        gateway = one if i % 2 == 0 else two
        allowed += await gateway.acquire("alice") == 0.0

    assert allowed == BURST  # not 2 x BURST
    assert await one.acquire("bob") == 0.0  # another principal has a count of its own


async def test_a_store_that_fails_hands_the_decision_to_the_own_bucket() -> None:
    store, registry, clock = FlakyBuckets(), CollectorRegistry(), FakeClock()
    shared = limiter(store, clock=clock, registry=registry)
    store.down = True

    waits = [await shared.acquire("alice") for _ in range(BURST + 1)]

    # Fail open, but not unlimited: this instance's own bucket still says no after the burst.
    assert waits[:BURST] == [0.0] * BURST
    assert waits[BURST] > 0
    assert shared.degraded
    assert store_errors(registry) == BURST + 1
    assert store.calls == 1  # not asked again until retry_after_error has passed


async def test_the_store_is_tried_again_after_the_pause_and_takes_over() -> None:
    store, registry, clock = FlakyBuckets(), CollectorRegistry(), FakeClock()
    shared = limiter(store, clock=clock, registry=registry)
    store.down = True
    await shared.acquire("alice")

    store.down = False
    clock.advance(0.5)
    await shared.acquire("alice")
    assert store.calls == 1  # still within the pause
    clock.advance(0.6)
    assert await shared.acquire("alice") == 0.0

    assert store.calls == 2
    assert not shared.degraded
    assert store_errors(registry) == 2


async def test_a_store_that_hangs_costs_the_timeout_once_then_nothing() -> None:
    store, registry = FlakyBuckets(), CollectorRegistry()
    shared = limiter(store, registry=registry, timeout=0.05)
    store.hang = True

    async with asyncio.timeout(2):  # a request must never wait on a frozen Redis for long
        first = await shared.acquire("alice")
        second = await shared.acquire("alice")

    assert (first, second) == (0.0, 0.0)
    assert store.calls == 1
    assert store_errors(registry) == 2
    await shared.close()  # stops the round trip still hanging


async def test_while_one_request_probes_a_hung_store_the_others_do_not_wait() -> None:
    store, clock = FlakyBuckets(), FakeClock()
    shared = limiter(store, clock=clock, timeout=0.5)
    store.down = True
    await shared.acquire("alice")  # the circuit opens
    store.down, store.hang = False, True
    clock.advance(1.1)

    probe = asyncio.create_task(shared.acquire("alice"))
    await asyncio.sleep(0)  # the probe is now waiting on the store
    async with asyncio.timeout(0.1):  # far less than the probe's timeout
        others = [await shared.acquire("bob") for _ in range(5)]

    assert others == [0.0] * 5
    assert await probe == 0.0  # timed out: judged locally, and the circuit reopened
    assert shared.degraded
    assert store.calls == 2  # the first failure and the one probe, nothing else
    await shared.close()


async def test_starting_on_a_hung_store_gives_up_in_time_and_raises_nothing() -> None:
    store = FlakyBuckets()
    shared = limiter(store)
    store.hang = True

    async with asyncio.timeout(2):
        await shared.start(within=0.1)

    assert store.calls == 1
    store.hang = False
    assert await shared.acquire("alice") == 0.0  # the first request finds it answering


def built_for(url: str) -> RateLimiter:
    return build_limiter(
        url,
        rate_per_second=RATE,
        burst=BURST,
        timeout=0.1,
        retry_after_error=1.0,
        key_prefix="bookify",
        registry=CollectorRegistry(),
    )


def test_memory_storage_builds_the_single_instance_bucket() -> None:
    assert isinstance(built_for("memory://"), TokenBucketLimiter)


async def test_a_redis_url_builds_the_shared_limiter_without_connecting() -> None:
    # Nothing listens on port 1: building must not connect (the first request does).
    built = built_for("redis://127.0.0.1:1/0")
    assert isinstance(built, SharedLimiter)
    # ... and with nothing there, the request is still answered, by the own bucket.
    assert await built.acquire("alice") == 0.0
    assert built.degraded
    await built.close()


def test_an_unknown_storage_is_refused_naming_what_works() -> None:
    with pytest.raises(ValidationError, match=r"memory:// .*redis://"):
        GatewaySettings(rate_limit_storage="mongodb://127.0.0.1:27017/")


def test_the_default_storage_is_the_local_redis() -> None:
    assert GatewaySettings().rate_limit_storage.startswith("redis://127.0.0.1:6379")


def test_a_password_never_reaches_a_log_line() -> None:
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://user:s3cret@redis:6379/0") == "redis://user:***@redis:6379/0"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"
