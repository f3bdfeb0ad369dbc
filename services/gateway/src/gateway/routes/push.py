"""Server-sent events: a booking's status, all of a caller's bookings, a resource's seats.

FastAPI's own SSE (``fastapi.sse``): each endpoint is a generator with
``response_class=EventSourceResponse``, which sets ``Cache-Control: no-cache`` and
``X-Accel-Buffering: no`` and documents the stream in OpenAPI. Everything that can refuse
the request (auth, rate limit, 404, the stream limits, 204) runs in the ``open_*``
dependency (gateway.deps), before the 200 is sent; its exit unsubscribes the stream.

What ``fastapi.sse`` lacks: its keep-alive interval is a fixed private constant (15 s), so
the streams send their own heartbeat comments every ``push_heartbeat_seconds``
(gateway.push); FastAPI's own ping then never fires while that setting is under 15 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway import push
from gateway.deps import (
    BookingStreamDep,
    DepsDep,
    Reader,
    SeatsStreamDep,
    SubscriptionDep,
    TimingDep,
)
from shared.problem import PROBLEM_MEDIA_TYPE, problem_responses

router = APIRouter(tags=["push"])

REFUSALS = (401, 403, 429, 503)  # every stream: no token, no scope, the limits
NOTHING_NEW: dict[int | str, dict[str, Any]] = {
    204: {"description": "Last-Event-ID already has the booking's final status: stop."}
}


def stream_problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``problem_responses`` for a stream route: FastAPI would file a response model under
    the route's own media type (text/event-stream), so the Problem schema is given under
    application/problem+json, what is really sent (every other route uses the model, so
    the schema is in the document)."""
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"description": response["description"], "content": problem}
        for status, response in problem_responses(*statuses).items()
    }


@router.get(
    "/bookings/events",
    response_class=EventSourceResponse,
    summary="Changes to any of the caller's bookings, from now on (`booking` events)",
    description="Each `booking` event's data is a BookingUpdate; its id is "
    "`<booking id>:<status>`. Read the state before with GET /v1/bookings/{id}. Heartbeat "
    "comments keep an idle stream alive; a `reconnect` event ends the stream (too slow a "
    "reader, the server's maximum age, or a shutdown).",
    responses=stream_problems(*REFUSALS),
)
async def caller_booking_events(
    sub: SubscriptionDep, timing: TimingDep
) -> AsyncIterator[ServerSentEvent]:
    async for event in push.principal_events(sub, timing):
        yield event


@router.get(
    "/bookings/{booking_id}/events",
    response_class=EventSourceResponse,
    summary="A booking's status now, then each change, until it is final (`booking` events)",
    description="The first `booking` event is the booking as GET /v1/bookings/{id} shows it "
    "(`pending` until decided); each event's id is the status. The stream ends after "
    "`rejected` or `cancelled`; a `confirmed` booking's stays open for a cancellation "
    "until the server's maximum age (a `reconnect` event). Reconnect with Last-Event-ID: "
    "what the client has is not sent again, and a final status it has is a 204.",
    responses=NOTHING_NEW | stream_problems(*REFUSALS, 404, 422),
)
async def booking_events(
    stream: BookingStreamDep,
    principal: Reader,
    deps: DepsDep,
    timing: TimingDep,
) -> AsyncIterator[ServerSentEvent]:
    async for event in push.booking_events(deps, principal, stream, timing):
        yield event


@router.get(
    "/resources/{resource_id}/events",
    response_class=EventSourceResponse,
    summary="Seats left on a resource now, then as they change (`seats` events, coalesced)",
    description="Each `seats` event's data is a SeatsOut and its id the resource's version; "
    "updates are coalesced to at most one per `push_seats_interval_seconds` (0.25 s).",
    responses=stream_problems(*REFUSALS, 404, 422),
)
async def seats_events(stream: SeatsStreamDep, timing: TimingDep) -> AsyncIterator[ServerSentEvent]:
    async for event in push.seats_events(stream, timing):
        yield event
