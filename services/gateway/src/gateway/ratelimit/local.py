"""One process's rate limit: a token bucket per principal, in memory (``memory://``, and the
shared limiter's fallback while Redis does not answer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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
