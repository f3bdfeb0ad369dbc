"""The per-principal rate limit: one token bucket per principal for all gateway instances, in Redis.

Why Redis, and not a counter in the gateway's own MongoDB (``$inc`` with upsert):

- Cost per request: a check on a local ``redis-server`` is one Lua call and no database
  write; an ``$inc`` upsert is a *write* per request, and the store's writes are what the
  whole platform shares, so the limiter alone would cap its request rate. Worse, FerretDB
  v1's ``$inc`` is not atomic, so a burst would mostly get through (see
  docs/PERFORMANCE.md#the-rate-limiter).
- What users run: a shared rate limit in Redis (or Valkey) is what API gateways keep their
  quotas in, and managed Redis is on every cloud.

The bucket is the in-memory :class:`TokenBucketLimiter`'s, kept in Redis as one number per
principal (GCRA: the instant its bucket would be full again, on Redis' own clock, so gateways
whose clocks differ still agree), updated by one atomic Lua script: ``rate_limit_burst`` at
once, then ``rate_limit_per_second``, whatever the number of gateways.

Why our own script and not the `limits` library (which the previous version used): `limits`
makes one Redis round trip per check, with no way to send several together, a large share of
a saturated gateway's CPU. Here the checks that arrive while one round trip is out go together
in the next one, one call of the script over all their keys, so a ticket drop's thousands of
principals cost a handful of round trips per millisecond, not one each, and a few
microseconds of client CPU per check (see docs/PERFORMANCE.md#the-rate-limiter).

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
import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import NoScriptError

from shared.logging import get_logger
from shared.urls import redact_url

log = get_logger(__name__)

MEMORY = "memory://"
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


class BucketStore(Protocol):
    """Where every gateway's buckets live: Redis (:class:`RedisBuckets`), a fake in tests."""

    async def take(self, principals: Sequence[str]) -> list[float]:
        """One token from each principal's bucket, in order, in one round trip: for each,
        0.0 when taken, else the seconds until one will be there."""
        ...

    async def start(self) -> None:
        """Connect and get ready to answer (raises when the store does not answer)."""
        ...

    async def close(self) -> None: ...


# GCRA: a token bucket of `burst` filling at one token per `interval` is one number, the
# instant (us, Redis' clock) at which the bucket would be full again: take one token by
# moving it one interval on, unless it is more than burst - 1 intervals ahead of now. The key
# expires when the bucket is full again, so an idle principal costs nothing. One call takes a
# token from each key in turn (a principal twice in KEYS is charged twice, in order), and
# answers each key's wait in us, 0 when taken.
GCRA_LUA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local ahead = interval * (tonumber(ARGV[2]) - 1)
local waits = {}
for i, key in ipairs(KEYS) do
  local full_at = tonumber(redis.call('GET', key) or now)
  if full_at < now then full_at = now end
  local wait = full_at - ahead - now
  if wait > 0 then
    waits[i] = math.ceil(wait)
  else
    full_at = full_at + interval
    redis.call('SET', key, string.format('%d', full_at), 'PX', math.ceil((full_at - now) / 1000))
    waits[i] = 0
  end
end
return waits
"""


class RedisBuckets:
    """The buckets in Redis: one EVALSHA per call, whatever the number of principals.

    Nothing connects here: :meth:`start` or the first call does (and a Redis that is not up
    yet is just one more outage to fail open through).
    """

    def __init__(
        self, url: str, *, rate_per_second: float, burst: int, key_prefix: str, timeout: float
    ) -> None:
        # One connection does: calls go one at a time (SharedLimiter sends the next batch when
        # the last one is back), and a spare covers start() racing the first request.
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        self._redis = redis.asyncio.Redis(connection_pool=self._pool)
        # Redis names a script by its SHA-1.
        self._sha = hashlib.sha1(GCRA_LUA.encode(), usedforsecurity=False).hexdigest()
        self._args = (max(1, round(1_000_000 / rate_per_second)), burst)
        self._prefix = f"{key_prefix}:rate:"

    async def take(self, principals: Sequence[str]) -> list[float]:
        keys = [self._prefix + principal for principal in principals]
        try:
            waits = await self._redis.evalsha(self._sha, len(keys), *keys, *self._args)
        except NoScriptError:  # Redis restarted, or its script cache was flushed: load it, again
            await self._redis.script_load(GCRA_LUA)
            waits = await self._redis.evalsha(self._sha, len(keys), *keys, *self._args)
        return [int(waited_us) / 1_000_000 for waited_us in waits]

    async def start(self) -> None:
        await self._redis.script_load(GCRA_LUA)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()


MAX_BATCH = 512  # checks per round trip: bounds one script call's keys, not the queue


class SharedLimiter:
    """The buckets in ``store``, shared by every gateway, failing open to ``fallback``.

    Checks that arrive while a round trip is out wait for the next one and go together.
    """

    def __init__(
        self,
        store: BucketStore,
        *,
        fallback: TokenBucketLimiter,
        metrics: RateLimitMetrics,
        timeout: float,
        retry_after_error: float,
        where: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._fallback = fallback
        self._metrics = metrics
        self._timeout = timeout
        self._retry_after_error = retry_after_error
        self._where = where
        self._clock = clock
        self._down_until: float | None = None  # while set (open), Redis is skipped until then
        self._probing = False  # a request is asking Redis whether it is back
        self._waiting: list[tuple[str, asyncio.Future[float]]] = []
        self._sender: asyncio.Task[None] | None = None

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
                wait = await self._ask(principal)
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

    def _ask(self, principal: str) -> asyncio.Future[float]:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((principal, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        return answer

    async def _send(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                waits = await self._store.take([principal for principal, _ in batch])
            except Exception as exc:
                for _, answer in batch:
                    if not answer.done():  # a request that timed out has cancelled its own
                        answer.set_exception(exc)
            else:
                for (_, answer), wait in zip(batch, waits, strict=True):
                    if not answer.done():
                        answer.set_result(wait)

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

    async def start(self, within: float = 2.0) -> None:
        """Connect and load the script before the first burst.

        Otherwise a burst right after start-up (a ticket drop opening with a deploy) spends
        its first fraction of a second on the handshake and the script load, times out, and
        is judged by each instance's own bucket. Best effort: Redis down now is an outage
        like any other, met by the first request.
        """
        try:
            async with asyncio.timeout(within):
                await self._store.start()
        except Exception as exc:
            log.warning(
                "rate_limit_store_not_ready", store=self._where, error=f"{type(exc).__name__}"
            )

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._store.close()


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
    store = RedisBuckets(
        storage_url,
        rate_per_second=rate_per_second,
        burst=burst,
        key_prefix=key_prefix,
        timeout=timeout,
    )
    return SharedLimiter(
        store,
        fallback=fallback,
        metrics=RateLimitMetrics(registry),
        timeout=timeout,
        retry_after_error=retry_after_error,
        where=redact_url(storage_url),
    )
