"""Push over server-sent events, against fakes: GET /v1/bookings/{id}/events,
/v1/bookings/events and /v1/resources/{id}/events (DESIGN section 10)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.bootstrap import build_hub
from gateway.hub import HubMetrics
from gateway.ports import AcceptedKind, AcceptedRecord
from shared.events import BookingCancelled, BookingConfirmed, BookingRejected, RejectionReason
from shared.readmodel import BookingView

from .conftest import bearer, settings
from .fakes import NOW, Fakes, FakeViews
from .sse import stream

Running = Callable[..., AbstractAsyncContextManager[ASGIApp]]


@pytest.fixture
def running(fakes: Fakes) -> Running:
    """The app with ``fakes``, under the given settings, for as long as the block runs."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[ASGIApp]:
        app = create_app(settings(**overrides), overrides=fakes.deps())
        async with LifespanManager(app) as manager:
            yield manager.app

    return run


@pytest.fixture
def resource_id(fakes: Fakes) -> UUID:
    rid = uuid4()
    fakes.views.add_resource(rid, capacity=10, available=10)
    return rid


def accepted(fakes: Fakes, resource_id: UUID, *, who: str = "alice") -> UUID:
    """A booking the gateway accepted and nobody decided yet: GET says pending."""
    booking_id = uuid4()
    fakes.accepted.records[booking_id] = AcceptedRecord(
        id=booking_id, kind=AcceptedKind.BOOKING, principal=who, resource_id=resource_id,
        command_id=uuid4(), accepted_at=NOW, quantity=2,
    )  # fmt: skip
    return booking_id


def event_fields(booking_id: UUID, resource_id: UUID, who: str = "alice") -> dict[str, Any]:
    return {
        "event_id": uuid4(), "command_id": uuid4(), "resource_id": resource_id,
        "accepted_at": NOW, "booking_id": booking_id, "principal": who, "quantity": 2,
    }  # fmt: skip


def confirmed(booking_id: UUID, resource_id: UUID, *, version: int = 2, who: str = "alice") -> Any:
    return BookingConfirmed(
        **event_fields(booking_id, resource_id, who), available=10 - version, version=version
    )


def cancelled(booking_id: UUID, resource_id: UUID, *, version: int = 3) -> Any:
    return BookingCancelled(**event_fields(booking_id, resource_id), available=10, version=version)


def statuses(events: list[Any]) -> list[str]:
    return [e.data["status"] for e in events]


async def test_a_booking_stream_sends_pending_then_each_decision_and_ends_when_final(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = accepted(fakes, resource_id)
    async with running() as app, stream(app, f"/v1/bookings/{booking_id}/events", bearer()) as s:
        assert s.status == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        assert s.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in s.headers
        first = await s.next()
        assert (first.event, first.id, first.data["status"]) == ("booking", "pending", "pending")
        assert first.data["id"] == str(booking_id)

        fakes.feed.emit(confirmed(booking_id, resource_id))
        then = await s.next()
        assert (then.id, then.data["status"], then.data["accepted_at"]) == (
            "confirmed", "confirmed", first.data["accepted_at"],
        )  # fmt: skip
        fakes.feed.emit(cancelled(booking_id, resource_id))

        assert statuses(await s.rest()) == ["cancelled"]  # then the server ends the stream


class ViewsWithEventDuringRead(FakeViews):
    """The read model, with an event arriving at the gateway while a booking is read."""

    def __init__(self, base: FakeViews, during_read: Callable[[], None]) -> None:
        super().__init__(base.resources, base.bookings)
        self._during_read = during_read

    async def get_booking(self, booking_id: UUID) -> BookingView | None:
        self._during_read()
        return await super().get_booking(booking_id)


@pytest.mark.parametrize("projected", [False, True], ids=["view-behind", "view-current"])
async def test_an_event_landing_between_subscribe_and_read_is_delivered_once(
    running: Running, fakes: Fakes, resource_id: UUID, projected: bool
) -> None:
    booking_id = accepted(fakes, resource_id)
    event = confirmed(booking_id, resource_id)

    def decided_meanwhile() -> None:
        fakes.feed.emit(event)  # the subscription exists: it buffers the change
        if projected:  # and the consumer may or may not have written the view yet
            fakes.views.add_booking(
                booking_id, principal="alice", resource_id=resource_id, status="confirmed"
            )

    fakes.views = ViewsWithEventDuringRead(fakes.views, decided_meanwhile)
    async with running() as app, stream(app, f"/v1/bookings/{booking_id}/events", bearer()) as s:
        assert statuses([await s.next()]) == ["confirmed"]
        fakes.feed.emit(event)  # a redelivery changes nothing
        fakes.feed.emit(cancelled(booking_id, resource_id))
        assert statuses(await s.rest()) == ["cancelled"]


async def test_a_decision_the_view_does_not_show_yet_is_taken_from_the_feed(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = accepted(fakes, resource_id)
    rejected = BookingRejected(
        **event_fields(booking_id, resource_id), reason=RejectionReason.SOLD_OUT
    )
    async with running() as app:
        fakes.feed.emit(rejected)  # before the stream opened, and not projected yet
        async with stream(app, f"/v1/bookings/{booking_id}/events", bearer()) as s:
            [final] = await s.rest()
    assert (final.data["status"], final.data["reason"]) == ("rejected", "sold_out")


async def test_last_event_id_skips_what_the_client_has_and_sends_what_it_missed(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )
    path = f"/v1/bookings/{booking_id}/events"
    async with running() as app:
        async with stream(app, path, bearer() | {"Last-Event-ID": "pending"}) as missed:
            assert statuses([await missed.next()]) == ["confirmed"]
        async with stream(app, path, bearer() | {"Last-Event-ID": "confirmed"}) as has_it:
            fakes.feed.emit(cancelled(booking_id, resource_id))
            # The first event after the reconnection is the cancellation, not the snapshot.
            assert statuses(await has_it.rest()) == ["cancelled"]
        async with stream(app, path, bearer() | {"Last-Event-ID": "nonsense"}) as unknown:
            assert statuses(await unknown.rest()) == ["cancelled"]  # a fresh snapshot
        async with stream(app, path, bearer() | {"Last-Event-ID": "cancelled"}) as done:
            assert done.status == 204  # EventSource stops reconnecting
            assert await done.body() is None


async def test_a_pending_booking_is_read_again_when_the_feed_says_nothing(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = accepted(fakes, resource_id)
    async with (
        running(push_resync_seconds=0.05) as app,
        stream(app, f"/v1/bookings/{booking_id}/events", bearer()) as s,
    ):
        assert statuses([await s.next()]) == ["pending"]
        fakes.views.add_booking(
            booking_id, principal="alice", resource_id=resource_id, status="rejected"
        )  # the consumer projected a decision this gateway's feed never saw
        assert statuses(await s.rest()) == ["rejected"]


async def test_another_principals_booking_is_a_404_problem(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = accepted(fakes, resource_id, who="bob")
    async with running() as app:
        for missing in (booking_id, uuid4()):
            async with stream(app, f"/v1/bookings/{missing}/events", bearer("alice")) as s:
                assert s.status == 404
                assert s.headers["content-type"] == "application/problem+json"
                assert (await s.body())["status"] == 404
        assert fakes.hub.open_streams == 0  # the refused streams were let go


async def test_streams_past_the_principals_limit_are_429_and_past_the_process_limit_503(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = accepted(fakes, resource_id)
    path = f"/v1/bookings/{booking_id}/events"
    fakes.hub = build_hub(
        settings(push_max_streams=2, push_max_streams_per_principal=1),
        HubMetrics(CollectorRegistry()),
    )
    async with running() as app, stream(app, path, bearer("alice")) as first:
        assert first.status == 200
        async with stream(app, path, bearer("alice")) as second:
            assert second.status == 429
            assert second.headers["retry-after"] == "5"
            problem = await second.body()
            assert (problem["status"], problem["retry_after"]) == (429, 5)
        async with stream(app, "/v1/bookings/events", bearer("bob")) as bobs:
            assert bobs.status == 200
            async with stream(app, "/v1/bookings/events", bearer("carol")) as carols:
                assert carols.status == 503
                assert carols.headers["retry-after"] == "5"
                assert carols.headers["content-type"] == "application/problem+json"
    assert fakes.hub.open_streams == 0


async def test_the_callers_stream_carries_each_of_its_bookings_and_no_one_elses(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    mine, also_mine, bobs = uuid4(), uuid4(), uuid4()
    async with running() as app, stream(app, "/v1/bookings/events", bearer("alice")) as s:
        fakes.feed.emit(confirmed(mine, resource_id, version=2))
        fakes.feed.emit(confirmed(bobs, resource_id, version=3, who="bob"))
        fakes.feed.emit(confirmed(also_mine, resource_id, version=4))
        fakes.feed.emit(cancelled(mine, resource_id, version=5))
        got = [await s.next() for _ in range(3)]
        fakes.hub.close()  # shutdown: the stream tells the client to reconnect
        last = await s.next()

    assert [e.id for e in got] == [
        f"{mine}:confirmed", f"{also_mine}:confirmed", f"{mine}:cancelled",
    ]  # fmt: skip
    assert (last.event, last.data) == ("reconnect", {"reason": "shutdown"})


async def test_seats_are_sent_now_then_coalesced_to_the_latest(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    async with (
        running(push_seats_interval_seconds=0.05) as app,
        stream(app, f"/v1/resources/{resource_id}/events", bearer()) as s,
    ):
        now = await s.next()
        assert (now.event, now.id, now.data["available"]) == ("seats", "1", 10)
        for version in range(2, 7):  # all at once: the stream is not woken in between
            fakes.feed.emit(confirmed(uuid4(), resource_id, version=version))
        latest = await s.next()
        assert (latest.id, latest.data["available"]) == ("6", 4)
        fakes.feed.emit(confirmed(uuid4(), resource_id, version=7))
        assert (await s.next()).id == "7"


async def test_an_open_stream_runs_no_task_beyond_the_requests_own(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    # The request's task and StreamingResponse's disconnect listener; fastapi.sse's path
    # would add its producer and keep-alive tasks (4; routes/push.py says why not).
    async with running() as app:
        before = len(asyncio.all_tasks())
        async with stream(app, f"/v1/resources/{resource_id}/events", bearer()) as s:
            await s.next()
            assert len(asyncio.all_tasks()) - before == 2


async def test_an_idle_stream_sends_heartbeat_comments(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    async with (
        running(push_heartbeat_seconds=0.02) as app,
        stream(app, f"/v1/resources/{resource_id}/events", bearer()) as s,
    ):
        await s.next()
        beat = await s.next(comments=True)
    assert (beat.comment, beat.event, beat.data) == ("heartbeat", None, None)


async def test_a_stream_past_its_maximum_age_tells_the_client_to_reconnect(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )
    async with (
        running(push_max_age_seconds=0.05) as app,
        stream(app, f"/v1/bookings/{booking_id}/events", bearer()) as s,
    ):
        events = await s.rest()
    assert [(e.event, e.data) for e in events][1:] == [("reconnect", {"reason": "max_age"})]


async def test_push_routes_ask_for_a_token_and_the_read_scope(
    running: Running, fakes: Fakes, resource_id: UUID
) -> None:
    async with running() as app:
        for path in ("/v1/bookings/events", f"/v1/resources/{resource_id}/events"):
            async with stream(app, path, {}) as anonymous:
                assert anonymous.status == 401
            async with stream(app, path, bearer(scope="bookings:write")) as writer:
                assert writer.status == 403


def test_every_status_a_push_route_answers_is_in_the_openapi_document() -> None:
    paths = create_app(settings(), overrides=Fakes().deps()).openapi()["paths"]
    refusals = {"200", "401", "403", "429", "503"}
    for path, answers in (
        ("/v1/bookings/{booking_id}/events", refusals | {"204", "404", "422"}),
        ("/v1/bookings/events", refusals),
        ("/v1/resources/{resource_id}/events", refusals | {"404", "422"}),
    ):
        responses = paths[path]["get"]["responses"]
        assert set(responses) == answers
        assert "text/event-stream" in responses["200"]["content"]
        for status in answers - {"200", "204"}:
            assert set(responses[status]["content"]) == {"application/problem+json"}
