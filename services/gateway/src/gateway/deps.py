"""FastAPI dependencies as ``Annotated`` aliases, all in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Request
from fastapi.security import HTTPBearer
from pydantic import TypeAdapter

from gateway import push
from gateway.bootstrap import GatewayDeps, GatewayRuntime
from gateway.errors import RateLimitedError
from gateway.hub import Subscription
from gateway.ratelimit import RateLimiter
from shared.auth import Principal, Scope
from shared.ops import authenticate, bearer, require_scope


# Every dependency is ``async def`` (FastAPI runs a plain ``def`` one in its thread pool, a
# thread hop per request for an attribute read) and takes the request alone, reading what
# it needs from the app's state: the fast lane calls them as they are (gateway.fast_lane).
async def get_deps(request: Request) -> GatewayDeps:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime.deps


DepsDep = Annotated[GatewayDeps, Depends(get_deps)]


class Authorized(HTTPBearer):
    """The bearer token's principal, charged one request against its rate limit (shared by
    every gateway instance unless rate_limit_storage is memory://), which must hold
    ``scope``. An HTTPBearer, so the OpenAPI document names the scheme the routes need."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            auto_error=False,  # a missing token is our 401 problem, not FastAPI's 403
            scheme_name=bearer.scheme_name,
            description=bearer.model.description,
        )
        self.required = scope

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        runtime: GatewayRuntime = request.app.state.runtime
        limiter: RateLimiter = request.app.state.limiter
        principal = authenticate(runtime.settings.auth, await super().__call__(request))
        if (wait := await limiter.acquire(principal.sub)) > 0:
            raise RateLimitedError(wait)
        return require_scope(principal, self.required)


reader = Authorized(Scope.BOOKINGS_READ)
writer = Authorized(Scope.BOOKINGS_WRITE)
admin = Authorized(Scope.RESOURCES_ADMIN)
Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
Admin = Annotated[Principal, Depends(admin)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen key: the same key and body return the same 202.",
    ),
]
IDEMPOTENCY_KEY: TypeAdapter[str | None] = TypeAdapter(IdempotencyKey)  # for the fast lane

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=100,
        description="The id of the last event received, sent back on reconnection.",
    ),
]


async def get_timing(request: Request) -> push.Timing:
    runtime: GatewayRuntime = request.app.state.runtime
    settings = runtime.settings
    return push.Timing(
        heartbeat=settings.push_heartbeat_seconds,
        max_age=settings.push_max_age_seconds,
        seats_interval=settings.push_seats_interval_seconds,
        resync=settings.push_resync_seconds,
    )


TimingDep = Annotated[push.Timing, Depends(get_timing)]


# Push streams (routes/push.py): each opens its stream before the 200 (so its errors are
# problems), and unsubscribes it once the response is over.
async def open_booking(
    booking_id: UUID, principal: Reader, deps: DepsDep, last_event_id: LastEventId = None
) -> AsyncIterator[push.BookingStream]:
    stream = await push.open_booking(deps, principal, booking_id, last_event_id)
    try:
        yield stream
    finally:
        deps.hub.unsubscribe(stream.sub)


async def open_principal(principal: Reader, deps: DepsDep) -> AsyncIterator[Subscription]:
    sub = push.open_principal(deps, principal)
    try:
        yield sub
    finally:
        deps.hub.unsubscribe(sub)


async def open_seats(
    resource_id: UUID, principal: Reader, deps: DepsDep, last_event_id: LastEventId = None
) -> AsyncIterator[push.SeatsStream]:
    stream = await push.open_seats(deps, principal, resource_id, last_event_id)
    try:
        yield stream
    finally:
        deps.hub.unsubscribe(stream.sub)


BookingStreamDep = Annotated[push.BookingStream, Depends(open_booking)]
SubscriptionDep = Annotated[Subscription, Depends(open_principal)]
SeatsStreamDep = Annotated[push.SeatsStream, Depends(open_seats)]
