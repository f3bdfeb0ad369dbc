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

from typing import Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from gateway.ratelimit.gcra import RedisBuckets
from gateway.ratelimit.local import TokenBucketLimiter
from gateway.ratelimit.shared import RateLimitMetrics, SharedLimiter
from shared.urls import redact_url

__all__ = [
    "RateLimitMetrics",
    "RateLimiter",
    "SharedLimiter",
    "TokenBucketLimiter",
    "build_limiter",
    "storage_scheme",
]

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
