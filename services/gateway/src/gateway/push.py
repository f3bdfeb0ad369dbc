"""Push: a booking's status, a caller's bookings and a resource's seats as server-sent events.

Each stream is opened in two steps. ``open_*`` subscribes to the hub *first*, then reads
the current state (the view, ``pending`` from the accepted record, or the hub's latest
change where the consumer has not projected it yet), and raises the request's errors (404,
429, 503, 204) before any byte is sent. The ``*_events`` generator then sends that state
and every later change, each once: a change whose rank (a booking's status only moves
forward) or version (a resource's ledger sequence) is not above what was sent is a
duplicate, so a change landing between the subscription and the read goes out once.

Every event has an ``id`` a reconnecting client sends back as ``Last-Event-ID``: the
booking's status, or the resource's version. The state sent first is skipped when the
client already has it, and a client that has its booking's final status gets 204, which
tells an EventSource to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from fastapi.sse import ServerSentEvent

from gateway import use_cases
from gateway.bootstrap import GatewayDeps
from gateway.errors import NothingNewError
from gateway.hub import (
    FINAL_STATUSES,
    STATUS_RANK,
    BookingChange,
    SeatsChange,
    StreamDroppedError,
    Subscription,
)
from gateway.schemas import BookingOut, BookingUpdate, Reconnect, SeatsOut
from shared.auth import Principal


@dataclass(frozen=True)
class Timing:
    """How a stream paces itself (GatewaySettings.push_*)."""

    heartbeat: float = 15.0
    max_age: float = 3600.0
    seats_interval: float = 0.25
    resync: float = 30.0


@dataclass
class BookingStream:
    sub: Subscription
    current: BookingOut
    send_current: bool  # False when the client's Last-Event-ID says it has it


@dataclass
class SeatsStream:
    sub: Subscription
    current: SeatsOut
    send_current: bool


# ------------------------------------------------------------------ one booking


def _with_change(out: BookingOut, change: BookingChange) -> BookingOut:
    return out.model_copy(
        update={"status": change.status, "reason": change.reason, "updated_at": change.updated_at}
    )


async def _booking_now(deps: GatewayDeps, principal: Principal, booking_id: UUID) -> BookingOut:
    """What GET /v1/bookings/{id} answers, or the hub's newer change if it saw one."""
    current = await use_cases.get_booking(deps, principal, booking_id)  # 404 if not theirs
    seen = deps.hub.latest_booking(booking_id)
    if seen is not None and seen.rank > STATUS_RANK[current.status]:
        return _with_change(current, seen)
    return current


async def open_booking(
    deps: GatewayDeps, principal: Principal, booking_id: UUID, last_event_id: str | None
) -> BookingStream:
    sub = deps.hub.subscribe_booking(principal.sub, booking_id)
    try:
        current = await _booking_now(deps, principal, booking_id)
        has = STATUS_RANK.get(last_event_id or "", -1)
        if has >= STATUS_RANK[current.status] and current.status in FINAL_STATUSES:
            raise NothingNewError(f"booking {booking_id} is {current.status}; nothing follows")
    except BaseException:
        deps.hub.unsubscribe(sub)
        raise
    return BookingStream(sub, current, send_current=has < STATUS_RANK[current.status])


def _booking_event(out: BookingOut) -> ServerSentEvent:
    return ServerSentEvent(event="booking", id=out.status, data=out)


def _reconnect(reason: str) -> ServerSentEvent:
    return ServerSentEvent(event="reconnect", data=Reconnect.model_validate({"reason": reason}))


async def booking_events(
    deps: GatewayDeps, principal: Principal, stream: BookingStream, timing: Timing
) -> AsyncIterator[ServerSentEvent]:
    """The booking's state, then each change, until it is final, the client leaves or
    ``timing.max_age`` passes. While it is pending, the view is re-read every
    ``timing.resync`` seconds: the safety net under a feed that missed the decision."""
    current = stream.current
    if stream.send_current:
        yield _booking_event(current)
    if current.status in FINAL_STATUSES:
        return
    async for item in _live(stream.sub, timing, tick=timing.resync):
        if isinstance(item, ServerSentEvent):
            yield item
            continue
        if item is None:  # a tick
            if current.status != "pending":
                continue
            fresh = await _booking_now(deps, principal, current.id)
            if STATUS_RANK[fresh.status] <= STATUS_RANK[current.status]:
                continue
            current = fresh
        else:
            assert isinstance(item, BookingChange)
            if item.rank <= STATUS_RANK[current.status]:
                continue
            current = _with_change(current, item)
        yield _booking_event(current)
        if current.status in FINAL_STATUSES:
            return


async def _live(
    sub: Subscription, timing: Timing, *, tick: float | None = None
) -> AsyncIterator[BookingChange | SeatsChange | ServerSentEvent | None]:
    """The subscription's changes, a heartbeat comment whenever nothing went out for
    ``timing.heartbeat``, None every ``tick`` seconds if given, and a ``reconnect`` event
    (then the end) once dropped or at ``timing.max_age``."""
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    deadline = quiet_since + timing.max_age
    tick_at = quiet_since + tick if tick is not None else math.inf
    while True:
        now = loop.time()
        if now >= deadline:
            yield _reconnect("max_age")
            return
        if tick is not None and now >= tick_at:
            tick_at = now + tick
            yield None
            continue
        if now - quiet_since >= timing.heartbeat:
            quiet_since = now
            yield ServerSentEvent(comment="heartbeat")
            continue
        try:
            async with asyncio.timeout(
                min(deadline, tick_at, quiet_since + timing.heartbeat) - now
            ):
                change = await sub.next()
        except TimeoutError:
            continue
        except StreamDroppedError as dropped:
            yield _reconnect(dropped.reason)
            return
        quiet_since = loop.time()
        yield change


# ------------------------------------------------------------------ all of a caller's bookings


def open_principal(deps: GatewayDeps, principal: Principal) -> Subscription:
    return deps.hub.subscribe_principal(principal.sub)


async def principal_events(sub: Subscription, timing: Timing) -> AsyncIterator[ServerSentEvent]:
    """Every change to the caller's bookings from now on, until the client leaves or
    ``timing.max_age`` passes (the state before: GET /v1/bookings/{id})."""
    async for change in _live(sub, timing):
        if isinstance(change, ServerSentEvent):
            yield change
            continue
        assert isinstance(change, BookingChange)
        update = BookingUpdate(
            id=change.booking_id,
            resource_id=change.resource_id,
            quantity=change.quantity,
            status=change.status,
            reason=change.reason,
            updated_at=change.updated_at,
        )
        yield ServerSentEvent(
            event="booking", id=f"{change.booking_id}:{change.status}", data=update
        )


# ------------------------------------------------------------------ seats left


def _seats_out(change: SeatsChange) -> SeatsOut:
    return SeatsOut(
        id=change.resource_id,
        available=change.available,
        version=change.version,
        updated_at=change.updated_at,
    )


async def _seats_now(deps: GatewayDeps, resource_id: UUID) -> SeatsOut:
    view = await deps.views.get_resource(resource_id)
    if view is not None and view.capacity is not None:
        current = SeatsOut(
            id=resource_id, available=view.available, version=view.version,
            updated_at=view.updated_at,
        )  # fmt: skip
    else:  # accepted, not yet projected (version 0), or a 404
        out = await use_cases.get_resource(deps, resource_id)
        current = SeatsOut(id=resource_id, available=out.available, version=0, updated_at=None)
    seen = deps.hub.latest_seats(resource_id)
    return _seats_out(seen) if seen is not None and seen.version > current.version else current


async def open_seats(
    deps: GatewayDeps, principal: Principal, resource_id: UUID, last_event_id: str | None
) -> SeatsStream:
    sub = deps.hub.subscribe_seats(principal.sub, resource_id)
    try:
        current = await _seats_now(deps, resource_id)
    except BaseException:
        deps.hub.unsubscribe(sub)
        raise
    has = int(last_event_id) if last_event_id and last_event_id.isdigit() else -1
    return SeatsStream(sub, current, send_current=has < current.version)


async def seats_events(stream: SeatsStream, timing: Timing) -> AsyncIterator[ServerSentEvent]:
    """Seats left now, then at most one update per ``timing.seats_interval`` (the latest;
    the ones in between are never sent), until the client leaves or ``timing.max_age``."""
    version = stream.current.version
    if stream.send_current:
        yield ServerSentEvent(event="seats", id=str(version), data=stream.current)
    async for change in _live(stream.sub, timing):
        if isinstance(change, ServerSentEvent):
            yield change
            continue
        assert isinstance(change, SeatsChange)
        if change.version <= version:
            continue
        version = change.version
        yield ServerSentEvent(event="seats", id=str(version), data=_seats_out(change))
        # The subscription keeps only the latest change meanwhile: that is the coalescing.
        await asyncio.sleep(timing.seats_interval)
