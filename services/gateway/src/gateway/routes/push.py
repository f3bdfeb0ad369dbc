"""Server-sent events: a booking's status, all of a caller's bookings, a resource's seats.

FastAPI's own SSE (``fastapi.sse``) gives the event model (``ServerSentEvent``) and its wire
format (``format_sse_event``); each endpoint returns Starlette's ``StreamingResponse`` of its
stream's encoded events (``text/event-stream``, ``Cache-Control: no-cache``,
``X-Accel-Buffering: no``). Everything that can refuse the request (auth, rate limit, 404,
the stream limits, 204) runs in the ``open_*`` dependency (gateway.deps), before the 200 is
sent; its exit, after the response is over, unsubscribes the stream.

What ``fastapi.sse`` lacks: a lean stream. Its path (any route whose ``response_class`` is
``EventSourceResponse``) runs a producer task and a keep-alive task per stream, joined by two
memory streams that every event crosses, so that a generator which never yields still gets
pinged; its keep-alive interval is a private constant (15 s). These streams pace their own
heartbeats (``push_heartbeat_seconds``, gateway.push), so they skip that path: two tasks a
stream (the request's, and Starlette's disconnect listener) instead of four, and an event
goes from the hub's queue to the socket in one task (PERFORMANCE.md, "Push streams").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.sse import ServerSentEvent, format_sse_event
from pydantic import BaseModel
from starlette.responses import StreamingResponse

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


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# What FastAPI documents for a generator's stream (its own copy is private): an event's fields.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
STREAM_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stream: one event per change, heartbeat comments between.",
        "content": {"text/event-stream": {"itemSchema": EVENT_SCHEMA}},
    }
}


def encode(event: ServerSentEvent) -> bytes:
    """An event on the wire, its data as JSON (a model by its own serializer)."""
    data = event.data
    if isinstance(data, BaseModel):
        data_str: str | None = data.model_dump_json()
    else:
        data_str = None if data is None else json.dumps(data)
    return format_sse_event(
        data_str=data_str, event=event.event, id=event.id, retry=event.retry, comment=event.comment
    )


async def _encoded(events: AsyncIterator[ServerSentEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield encode(event)


def event_stream(events: AsyncIterator[ServerSentEvent]) -> StreamingResponse:
    return StreamingResponse(
        _encoded(events), media_type="text/event-stream", headers=STREAM_HEADERS
    )


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
    response_class=StreamingResponse,
    summary="Changes to any of the caller's bookings, from now on (`booking` events)",
    description="Each `booking` event's data is a BookingUpdate; its id is "
    "`<booking id>:<status>`. Read the state before with GET /v1/bookings/{id}. Heartbeat "
    "comments keep an idle stream alive; a `reconnect` event ends the stream (too slow a "
    "reader, the server's maximum age, or a shutdown).",
    responses=STREAM_OK | stream_problems(*REFUSALS),
)
async def caller_booking_events(sub: SubscriptionDep, timing: TimingDep) -> StreamingResponse:
    return event_stream(push.principal_events(sub, timing))


@router.get(
    "/bookings/{booking_id}/events",
    response_class=StreamingResponse,
    summary="A booking's status now, then each change, until it is final (`booking` events)",
    description="The first `booking` event is the booking as GET /v1/bookings/{id} shows it "
    "(`pending` until decided); each event's id is the status. The stream ends after "
    "`rejected` or `cancelled`; a `confirmed` booking's stays open for a cancellation "
    "until the server's maximum age (a `reconnect` event). Reconnect with Last-Event-ID: "
    "what the client has is not sent again, and a final status it has is a 204.",
    responses=STREAM_OK | NOTHING_NEW | stream_problems(*REFUSALS, 404, 422),
)
async def booking_events(
    stream: BookingStreamDep,
    principal: Reader,
    deps: DepsDep,
    timing: TimingDep,
) -> StreamingResponse:
    return event_stream(push.booking_events(deps, principal, stream, timing))


@router.get(
    "/resources/{resource_id}/events",
    response_class=StreamingResponse,
    summary="Seats left on a resource now, then as they change (`seats` events, coalesced)",
    description="Each `seats` event's data is a SeatsOut and its id the resource's version; "
    "updates are coalesced to at most one per `push_seats_interval_seconds` (0.25 s).",
    responses=STREAM_OK | stream_problems(*REFUSALS, 404, 422),
)
async def seats_events(stream: SeatsStreamDep, timing: TimingDep) -> StreamingResponse:
    return event_stream(push.seats_events(stream, timing))
