"""The in-memory fan-out of one gateway process: decided events in, open streams out.

Pure asyncio, no I/O. The feed (:mod:`gateway.adapters.feed`) hands every event it reads
from ``bookify.events`` to :meth:`Hub.publish_event`; each open stream (a
:class:`Subscription`) is registered under a booking id, a principal or a resource id and
gets the changes that match in a bounded buffer of its own. Publishing never waits: a
subscription whose buffer is full is dropped on the spot (its stream then tells the client
to reconnect), so one slow reader never slows the feed or anyone else. A seats subscription
keeps only the latest change, so it can never fall behind.

The hub also remembers the latest change of recent bookings and resources (bounded, LRU):
the feed may see a decision before the consumer has projected it, and a stream that opens
in between must not read ``pending`` from the view and then wait for an event that
already went by.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, TypeVar
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    Event,
    ResourceCreated,
)
from shared.telemetry import LATENCY_BUCKETS

# A booking's status only moves forward: pending -> confirmed -> cancelled, or -> rejected.
STATUS_RANK: Final = {"pending": 0, "confirmed": 1, "rejected": 2, "cancelled": 2}
FINAL_STATUSES: Final = frozenset({"rejected", "cancelled"})


@dataclass(frozen=True, slots=True)
class BookingChange:
    """A booking as it now stands (from an event, or the view read when a stream opens)."""

    booking_id: UUID
    principal: str
    resource_id: UUID
    quantity: int
    status: str
    reason: str | None
    updated_at: datetime

    @property
    def rank(self) -> int:
        return STATUS_RANK[self.status]

    @property
    def final(self) -> bool:
        """Nothing can change it any more."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class SeatsChange:
    """A resource's seats left after its ledger entry ``version``."""

    resource_id: UUID
    available: int
    version: int
    updated_at: datetime


Change = BookingChange | SeatsChange


def changes_of(event: Event) -> list[Change]:
    """What ``event`` changes, as the streams show it."""
    match event:
        case BookingConfirmed() | BookingCancelled():
            status = "confirmed" if isinstance(event, BookingConfirmed) else "cancelled"
            return [
                BookingChange(event.booking_id, event.principal, event.resource_id,
                              event.quantity, status, None, event.occurred_at),
                SeatsChange(event.resource_id, event.available, event.version, event.occurred_at),
            ]  # fmt: skip
        case BookingRejected():
            return [
                BookingChange(event.booking_id, event.principal, event.resource_id,
                              event.quantity, "rejected", event.reason.value, event.occurred_at)
            ]  # fmt: skip
        case ResourceCreated():
            return [
                SeatsChange(event.resource_id, event.available, event.version, event.occurred_at)
            ]
    return []


class Scope(StrEnum):
    """Whose limit a refused stream hit."""

    PRINCIPAL = "principal"
    PROCESS = "process"


class TooManyStreamsError(Exception):
    def __init__(self, scope: Scope, limit: int) -> None:
        super().__init__(f"{limit} streams already open for this {scope.value}")
        self.scope = scope
        self.limit = limit


class StreamDroppedError(Exception):
    """The subscriber did not keep up (``too_slow``: its buffer filled) or the hub closed
    (``shutdown``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HubMetrics:
    """The streams of this process by kind (``booking``, ``principal``, ``seats``: what a
    stream follows): open now, opened, refused by a limit, dropped by the hub; and how late
    the feed hands events to them."""

    KINDS: Final = ("booking", "principal", "seats")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "bookify_push_streams_open", "Push streams open now.", ["kind"], registry=registry
        )
        self.opened = Counter(
            "bookify_push_streams_opened", "Push streams opened.", ["kind"], registry=registry
        )
        self.refused = Counter(
            "bookify_push_streams_refused",
            "Push streams refused by a limit (429 per principal, 503 per process).",
            ["kind", "limit"],
            registry=registry,
        )
        self.dropped = Counter(
            "bookify_push_streams_dropped",
            "Push streams the hub ended: too_slow (its buffer filled), shutdown.",
            ["kind", "reason"],
            registry=registry,
        )
        self.feed_lag = Histogram(
            "bookify_push_feed_lag_seconds",
            "From a live event's Kafka timestamp to this process's feed handing it to the "
            "streams (what push adds before a stream's own write).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for kind in self.KINDS:  # every series exists from the start, at 0
            self.open.labels(kind)
            self.opened.labels(kind)
            for limit in Scope:
                self.refused.labels(kind, limit.value)
            for reason in ("too_slow", "shutdown"):
                self.dropped.labels(kind, reason)


class Subscription:
    """One stream's buffer: up to ``capacity`` changes, or only the latest if ``latest_only``.

    Not thread-safe; one reader (the stream), any number of publishes on the same loop.
    """

    __slots__ = ("_buffer", "_capacity", "_latest_only", "_ready", "dropped", "key", "principal")

    def __init__(
        self, principal: str, key: tuple[str, Hashable], *, capacity: int, latest_only: bool
    ) -> None:
        self.principal = principal
        self.key = key
        self.dropped: str | None = None  # why, once dropped
        self._capacity = capacity
        self._latest_only = latest_only
        self._buffer: deque[Change] = deque()
        self._ready = asyncio.Event()

    def offer(self, change: Change) -> bool:
        """Buffer ``change``; False when full (the hub then drops this subscription)."""
        if self._latest_only:
            self._buffer.clear()
        elif len(self._buffer) >= self._capacity:
            return False
        self._buffer.append(change)
        self._ready.set()
        return True

    def __len__(self) -> int:
        """Changes buffered, not yet read."""
        return len(self._buffer)

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self._buffer.clear()
        self._ready.set()

    async def next(self) -> Change:
        """The next change, waiting for one; raises :class:`StreamDroppedError` once dropped."""
        while not self._buffer:
            if self.dropped is not None:
                raise StreamDroppedError(self.dropped)
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()


class Hub:
    """Subscriptions by booking id, principal and resource id, with per-process and
    per-principal limits on how many may be open at once."""

    def __init__(
        self,
        *,
        max_streams: int = 10_000,
        max_streams_per_principal: int = 20,
        buffer_size: int = 64,
        recent_max: int = 50_000,
        metrics: HubMetrics | None = None,
    ) -> None:
        self.max_streams = max_streams
        self.max_streams_per_principal = max_streams_per_principal
        self._buffer_size = buffer_size
        self._recent_max = recent_max
        self._metrics = metrics
        self._subscribers: dict[tuple[str, Hashable], set[Subscription]] = {}
        self._per_principal: dict[str, int] = {}
        self._open = 0
        self._bookings: OrderedDict[UUID, BookingChange] = OrderedDict()
        self._seats: OrderedDict[UUID, SeatsChange] = OrderedDict()

    @property
    def open_streams(self) -> int:
        return self._open

    # ------------------------------------------------------------------ subscribing

    def subscribe_booking(self, principal: str, booking_id: UUID) -> Subscription:
        return self._subscribe(principal, ("booking", booking_id), latest_only=False)

    def subscribe_principal(self, principal: str) -> Subscription:
        return self._subscribe(principal, ("principal", principal), latest_only=False)

    def subscribe_seats(self, principal: str, resource_id: UUID) -> Subscription:
        return self._subscribe(principal, ("seats", resource_id), latest_only=True)

    def _subscribe(
        self, principal: str, key: tuple[str, Hashable], *, latest_only: bool
    ) -> Subscription:
        if self._open >= self.max_streams:
            raise self._refused(key, Scope.PROCESS, self.max_streams)
        if self._per_principal.get(principal, 0) >= self.max_streams_per_principal:
            raise self._refused(key, Scope.PRINCIPAL, self.max_streams_per_principal)
        sub = Subscription(principal, key, capacity=self._buffer_size, latest_only=latest_only)
        self._subscribers.setdefault(key, set()).add(sub)
        self._per_principal[principal] = self._per_principal.get(principal, 0) + 1
        self._open += 1
        if self._metrics is not None:
            self._metrics.open.labels(key[0]).inc()
            self._metrics.opened.labels(key[0]).inc()
        return sub

    def _refused(self, key: tuple[str, Hashable], scope: Scope, limit: int) -> TooManyStreamsError:
        if self._metrics is not None:
            self._metrics.refused.labels(key[0], scope.value).inc()
        return TooManyStreamsError(scope, limit)

    def unsubscribe(self, sub: Subscription) -> None:
        """Idempotent: a dropped subscription is already gone from the indexes."""
        subs = self._subscribers.get(sub.key)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.key]
        count = self._per_principal[sub.principal] - 1
        if count:
            self._per_principal[sub.principal] = count
        else:
            del self._per_principal[sub.principal]
        self._open -= 1
        if self._metrics is not None:
            self._metrics.open.labels(sub.key[0]).dec()

    def _drop(self, sub: Subscription, reason: str) -> None:
        self.unsubscribe(sub)
        sub.drop(reason)
        if self._metrics is not None:
            self._metrics.dropped.labels(sub.key[0], reason).inc()

    def close(self) -> None:
        """End every stream (shutdown): each is told to reconnect, to another process."""
        for sub in [s for subs in self._subscribers.values() for s in subs]:
            self._drop(sub, "shutdown")

    # ------------------------------------------------------------------ publishing

    def latest_booking(self, booking_id: UUID) -> BookingChange | None:
        return self._bookings.get(booking_id)

    def latest_seats(self, resource_id: UUID) -> SeatsChange | None:
        return self._seats.get(resource_id)

    def publish_event(self, event: Event) -> None:
        for change in changes_of(event):
            self.publish(change)

    def publish(self, change: Change) -> None:
        """Fan ``change`` out, unless it is a redelivery or older than what was seen."""
        if isinstance(change, BookingChange):
            seen = self._bookings.get(change.booking_id)
            if seen is not None and seen.rank >= change.rank:
                return
            _remember(self._bookings, change.booking_id, change, self._recent_max)
            self._fan_out(("booking", change.booking_id), change)
            self._fan_out(("principal", change.principal), change)
        else:
            last = self._seats.get(change.resource_id)
            if last is not None and last.version >= change.version:
                return
            _remember(self._seats, change.resource_id, change, self._recent_max)
            self._fan_out(("seats", change.resource_id), change)

    def _fan_out(self, key: tuple[str, Hashable], change: Change) -> None:
        subs = self._subscribers.get(key)
        if not subs:
            return
        for sub in list(subs):
            if not sub.offer(change):
                self._drop(sub, "too_slow")


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
