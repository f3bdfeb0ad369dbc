"""The per-principal rate limit: one limit for all gateway instances, in Redis through `limits`.

Why Redis, and not a counter in the gateway's own MongoDB (``$inc`` with upsert):

- Cost per request (``uv run python -m tests.support.ratelimit_cost``; docs/DESIGN.md
  section 9): a ``limits`` sliding-window hit on a local ``redis-server`` is one Lua call,
  p50 0.15-0.3 ms, and no database write. An ``$inc`` upsert is a *write* per request (p50
  1.2-1.6 ms, at most ~1,500/s): FerretDB here takes about 1,100 single-document writes/s
  for every service together, so the limiter alone would cap the platform's request rate
  and compete with the bookings for the one SQLite writer; on MongoDB it is still a
  journaled write per GET. Worse, FerretDB v1's ``$inc`` is not atomic: of 500 concurrent
  increments of one key it counted 83 and 148, so a burst would mostly get through.
- What users run: a shared rate limit in Redis (or Valkey) is what API gateways and the
  ``limits`` library are built around, managed Redis is on every cloud, and `limits`' own
  MongoDB storage does not run on FerretDB v1 at all (no TTL indexes, no findAndModify
  ``fields``, no aggregation pipelines).

The strategy is `limits`' sliding window counter: two counters per principal, updated by one
atomic Lua script, so N gateways (or N replicas racing) see one count. `limits` counts in
whole seconds, so ``rate_limit_burst`` requests are allowed per window of
``ceil(burst / rate)`` seconds: the defaults, 40 at 20/s, are 40 per 2 s. A fresh principal
gets its whole burst at once; within any one second it never gets more than burst + rate.

If Redis does not answer (down, or slower than ``rate_limit_timeout_seconds``), the gateway
*fails open to its own bucket*: the request is judged by this instance's in-memory token
bucket, a warning is logged once per outage, ``bookify_rate_limit_store_errors_total``
counts each such decision, and after ``rate_limit_retry_seconds`` one request probes Redis
while the others stay local (a circuit breaker: :meth:`SharedLimiter.acquire`).
A principal may then get up to N x its limit from N instances, never an unlimited rate, and
a Redis outage never turns into 5xx or a not-ready gateway: the limit protects capacity, it
is not what keeps bookings correct (the ledger's unique index does that).

``memory://`` keeps the token bucket alone, in each process: right for one instance only
(`bookify up --replicas` refuses it with more than one gateway, and so does the Helm chart).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import SlidingWindowCounterSupport, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import CollectorRegistry, Counter

from shared.logging import get_logger
from shared.settings import redact_url

log = get_logger(__name__)

MEMORY = "memory://"
POOL_SIZE = 16  # Redis connections per gateway process
WARM_UP_KEY = "\x00warm-up"  # not a principal: a JWT's sub is never this
SHARED_SCHEMES = ("redis", "rediss")
STORAGE_SCHEMES = ("memory", *SHARED_SCHEMES)


class RateLimiter(Protocol):
    """What the gateway asks of a limiter: may ``principal`` go on, and if not, for how long."""

    async def acquire(self, principal: str) -> float:
        """Take one request's worth; 0.0 when allowed, else the seconds until one would be."""
        ...

    async def start(self) -> None:
        """Get ready for a burst (connections, scripts); never raises."""
        ...

    async def close(self) -> None: ...


def storage_scheme(url: str) -> str:
    """The scheme of a rate-limit storage URL, or ValueError naming what is accepted."""
    scheme = urlsplit(url).scheme
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(
            f"rate_limit_storage {redact_url(url)!r}: expected memory:// (one instance only) or "
            "redis://[:password@]host:port/db (rediss:// for TLS)"
        )
    return scheme


# ------------------------------------------------------------------ one process


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Per-principal token buckets in this process's memory.

    The single-instance limiter (``memory://``), and the fallback of :class:`SharedLimiter`
    while Redis does not answer.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_principals: int = 100_000,
    ) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._max = max_principals
        self._buckets: dict[str, _Bucket] = {}

    def take(self, principal: str) -> float:
        """Take one token; return 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(principal)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._forget_idle(now)
            bucket = self._buckets[principal] = _Bucket(self._burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    async def acquire(self, principal: str) -> float:
        return self.take(principal)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _forget_idle(self, now: float) -> None:
        # A bucket that would be full again carries no information: dropping it is exact.
        refill = self._burst / self._rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= refill]:
            del self._buckets[key]
        if len(self._buckets) >= self._max:  # all busy: bound memory, forget the oldest
            oldest = min(self._buckets, key=lambda k: self._buckets[k].updated)
            del self._buckets[oldest]


# ------------------------------------------------------------------ every instance


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.store_errors = Counter(
            "bookify_rate_limit_store_errors",
            "Rate-limit decisions the shared store (Redis) did not make in time; each was "
            "made by this gateway's own in-memory bucket instead.",
            registry=registry,
        )


def shared_item(rate_per_second: float, burst: int) -> RateLimitItem:
    """``burst`` per window of ``ceil(burst / rate)`` whole seconds (`limits`' granularity)."""
    window = max(1, math.ceil(burst / rate_per_second))
    return RateLimitItemPerSecond(burst, window, namespace="bookify-rate")


class SharedLimiter:
    """`limits`' sliding window counter on a shared storage, failing open to ``fallback``.

    ``storage`` is any async `limits` storage with sliding-window support: Redis in
    production (:func:`redis_storage`), `limits`' own MemoryStorage in unit tests.
    """

    def __init__(
        self,
        storage: Storage,
        item: RateLimitItem,
        *,
        fallback: TokenBucketLimiter,
        metrics: RateLimitMetrics,
        timeout: float,
        retry_after_error: float,
        where: str = "",
        on_close: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(storage, SlidingWindowCounterSupport):
            raise TypeError(f"{type(storage).__name__} cannot hold a sliding window")
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = item
        self._fallback = fallback
        self._metrics = metrics
        self._timeout = timeout
        self._retry_after_error = retry_after_error
        self._where = where
        self._on_close = on_close
        self._clock = clock
        self._down_until: float | None = None  # while set (open), Redis is skipped until then
        self._probing = False  # a request is asking Redis whether it is back

    @property
    def degraded(self) -> bool:
        """True while decisions are made by this instance's own bucket."""
        return self._down_until is not None

    async def acquire(self, principal: str) -> float:
        """A circuit breaker around the store: closed, every request asks Redis; open, every
        request is judged locally until ``retry_after_error`` has passed; then one request
        probes Redis (the others stay local) and its answer closes or reopens the circuit."""
        now = self._clock()
        probe = False
        if self._down_until is not None:
            if now < self._down_until or self._probing:
                return self._local(principal)
            probe = self._probing = True
        try:
            async with asyncio.timeout(self._timeout):
                if await self._limiter.hit(self._item, principal):
                    wait = 0.0
                else:
                    stats = await self._limiter.get_window_stats(self._item, principal)
                    # At least a moment: "refused" must never read as "allowed" (0.0).
                    wait = max(stats.reset_time - time.time(), 0.001)
        except Exception as exc:  # any store failure: the limit must not fail the request
            return self._failed(principal, exc)
        finally:
            if probe:
                self._probing = False
        # Only the probe closes the circuit: a request sent before it opened proves little.
        if probe:
            self._down_until = None
            log.info("rate_limit_store_back", store=self._where)
        return wait

    def _failed(self, principal: str, exc: Exception) -> float:
        if self._down_until is None:
            log.warning(
                "rate_limit_store_unavailable",
                store=self._where,
                error=f"{type(exc).__name__}: {exc}",
                fallback="this instance's own bucket until the store answers again",
                retry_seconds=self._retry_after_error,
            )
        self._down_until = self._clock() + self._retry_after_error
        return self._local(principal)

    def _local(self, principal: str) -> float:
        self._metrics.store_errors.inc()
        return self._fallback.take(principal)

    async def start(self, connections: int = POOL_SIZE, within: float = 2.0) -> None:
        """Open the pool's connections and load the scripts before the first burst.

        Otherwise a burst right after start-up (a ticket drop opening with a deploy) spends
        its first fraction of a second on TCP handshakes and script loads, times out, and is
        judged by each instance's own bucket. Best effort: Redis down now is an outage like
        any other, met by the first request.
        """
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(self._storage.check() for _ in range(connections)))
                # Both Lua scripts (hit, and the window's stats behind a 429), on a key no
                # principal's requests use.
                await self._limiter.hit(self._item, WARM_UP_KEY)
                await self._limiter.get_window_stats(self._item, WARM_UP_KEY)
        except Exception as exc:
            log.warning(
                "rate_limit_store_not_ready", store=self._where, error=f"{type(exc).__name__}"
            )

    async def close(self) -> None:
        if self._on_close is not None:
            result = self._on_close()
            if asyncio.iscoroutine(result):
                await result


def redis_storage(
    url: str, *, key_prefix: str, timeout: float
) -> tuple[Storage, Callable[[], object]]:
    """`limits`' Redis storage over redis-py, with a bounded pool; and how to close it.

    Nothing connects here: the first request does (and a Redis that is not up yet is just
    one more outage to fail open through).
    """
    import redis.asyncio
    from limits.aio.storage import RedisStorage

    # Waits for a free connection instead of opening one per concurrent request: a burst of
    # thousands of requests needs a few connections to a server answering in < 1 ms, and each
    # new one costs handshakes on the gateway's event loop.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    own_pool: dict[str, Any] = {"connection_pool": pool}  # passed to redis-py as is
    storage = RedisStorage(
        f"async+{url}", implementation="redispy", wrap_exceptions=True, key_prefix=key_prefix,
        **own_pool,
    )  # fmt: skip
    return storage, pool.disconnect


def build_limiter(
    storage_url: str,
    *,
    rate_per_second: float,
    burst: int,
    timeout: float,
    retry_after_error: float,
    key_prefix: str,
    registry: CollectorRegistry,
) -> RateLimiter:
    """The limiter ``storage_url`` names: ``memory://`` or a Redis URL."""
    fallback = TokenBucketLimiter(rate_per_second, burst)
    if storage_scheme(storage_url) == "memory":
        return fallback
    storage, close = redis_storage(storage_url, key_prefix=key_prefix, timeout=timeout)
    return SharedLimiter(
        storage,
        shared_item(rate_per_second, burst),
        fallback=fallback,
        metrics=RateLimitMetrics(registry),
        timeout=timeout,
        retry_after_error=retry_after_error,
        where=redact_url(storage_url),
        on_close=close,
    )
