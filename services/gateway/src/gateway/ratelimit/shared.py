"""Every gateway's limit: the buckets in a shared store, failing open to the local bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from gateway.coalesce import Coalescer
from gateway.ratelimit.local import TokenBucketLimiter
from shared.logging import get_logger

log = get_logger(__name__)


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


MAX_BATCH = 512  # checks per round trip: bounds one script call's keys, not the queue


class SharedLimiter:
    """The buckets in ``store``, shared by every gateway, failing open to ``fallback``.

    Checks that arrive while a round trip is out wait for the next one and go together
    (a :class:`~gateway.coalesce.Coalescer` with no delay: an idle limiter sends at once).
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
        self._batcher: Coalescer[str, float] = Coalescer(
            store.take, max_batch=MAX_BATCH, max_delay=0, unavailable=_unavailable
        )

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
                wait = await self._batcher.submit(principal)
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
        await self._batcher.abort()
        await self._store.close()


def _unavailable(detail: str) -> ConnectionError:
    # Only the limiter's own closing makes one: judged locally, like any store failure.
    return ConnectionError(f"rate-limit store: {detail}")
