"""The push hub (gateway.hub): fan-out by key, order per booking, limits, slow readers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from prometheus_client import CollectorRegistry

from gateway.hub import (
    BookingChange,
    Hub,
    HubMetrics,
    Scope,
    SeatsChange,
    StreamDroppedError,
    Subscription,
    TooManyStreamsError,
    changes_of,
)
from shared.events import BookingCancelled, BookingConfirmed, BookingRejected, RejectionReason

from .fakes import NOW


def change(booking_id: UUID, status: str, *, principal: str = "alice") -> BookingChange:
    return BookingChange(booking_id, principal, uuid4(), 2, status, None, NOW)


async def next_booking(sub: Subscription) -> BookingChange:
    got = await sub.next()
    assert isinstance(got, BookingChange)
    return got


def seats(resource_id: UUID, version: int) -> SeatsChange:
    return SeatsChange(resource_id, 10 - version, version, NOW + timedelta(seconds=version))


async def test_a_change_reaches_the_booking_and_the_principal_subscribers_only() -> None:
    hub = Hub()
    booking = uuid4()
    mine = hub.subscribe_booking("alice", booking)
    all_mine = hub.subscribe_principal("alice")
    other_booking = hub.subscribe_booking("alice", uuid4())
    bobs = hub.subscribe_principal("bob")

    hub.publish(change(booking, "confirmed"))
    hub.publish(change(uuid4(), "rejected", principal="bob"))

    assert (await next_booking(mine)).status == "confirmed"
    assert (await next_booking(all_mine)).status == "confirmed"
    assert (await next_booking(bobs)).status == "rejected"
    assert (len(mine), len(all_mine), len(other_booking), len(bobs)) == (0, 0, 0, 0)


async def test_a_booking_moves_only_forward_and_each_status_is_sent_once() -> None:
    hub = Hub()
    booking = uuid4()
    sub = hub.subscribe_booking("alice", booking)

    for status in ("confirmed", "confirmed", "pending", "cancelled", "confirmed", "cancelled"):
        hub.publish(change(booking, status))

    assert [(await next_booking(sub)).status for _ in range(2)] == ["confirmed", "cancelled"]
    assert len(sub) == 0


async def test_the_hub_remembers_the_latest_change_of_recent_bookings_and_resources() -> None:
    hub = Hub(recent_max=2)
    first, second, third = uuid4(), uuid4(), uuid4()
    for booking in (first, second, third):
        hub.publish(change(booking, "confirmed"))
    resource = uuid4()
    hub.publish(seats(resource, 3))
    hub.publish(seats(resource, 2))  # older: ignored

    assert hub.latest_booking(first) is None  # evicted, least recent first
    assert hub.latest_booking(third) is not None
    latest = hub.latest_seats(resource)
    assert latest is not None
    assert latest.version == 3


async def test_a_slow_subscriber_is_dropped_and_never_holds_back_a_fast_one() -> None:
    hub = Hub(buffer_size=2)
    slow = hub.subscribe_principal("alice")
    fast = hub.subscribe_principal("alice")
    bookings = [uuid4() for _ in range(5)]

    received = []
    for booking in bookings:
        hub.publish(change(booking, "confirmed"))  # never waits, whoever reads or not
        received.append((await next_booking(fast)).booking_id)

    assert received == bookings
    assert slow.dropped == "too_slow"
    with pytest.raises(StreamDroppedError, match="too_slow"):
        await slow.next()
    assert hub.open_streams == 1  # the dropped one no longer counts


async def test_a_waiting_reader_is_woken_by_a_publish() -> None:
    hub = Hub()
    booking = uuid4()
    sub = hub.subscribe_booking("alice", booking)
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0)

    hub.publish(change(booking, "rejected"))

    got = await waiting
    assert isinstance(got, BookingChange)
    assert got.status == "rejected"


async def test_a_seats_subscriber_keeps_only_the_latest_change() -> None:
    hub = Hub(buffer_size=1)
    resource = uuid4()
    sub = hub.subscribe_seats("alice", resource)

    for version in range(1, 6):
        hub.publish(seats(resource, version))

    assert sub.dropped is None
    latest = await sub.next()
    assert isinstance(latest, SeatsChange)
    assert latest.version == 5


def test_the_limits_per_principal_and_per_process_refuse_past_them_and_free_on_leaving() -> None:
    hub = Hub(max_streams=3, max_streams_per_principal=2)
    alice = [hub.subscribe_principal("alice"), hub.subscribe_booking("alice", uuid4())]
    with pytest.raises(TooManyStreamsError) as per_principal:
        hub.subscribe_seats("alice", uuid4())
    assert per_principal.value.scope is Scope.PRINCIPAL

    hub.subscribe_principal("bob")
    with pytest.raises(TooManyStreamsError) as per_process:
        hub.subscribe_principal("carol")
    assert per_process.value.scope is Scope.PROCESS

    hub.unsubscribe(alice[0])
    hub.unsubscribe(alice[0])  # twice is harmless
    hub.subscribe_principal("carol")
    assert hub.open_streams == 3


async def test_closing_the_hub_ends_every_stream_for_a_reconnect() -> None:
    hub = Hub()
    subs = [hub.subscribe_principal("alice"), hub.subscribe_seats("bob", uuid4())]

    hub.close()

    for sub in subs:
        with pytest.raises(StreamDroppedError, match="shutdown"):
            await sub.next()
    assert hub.open_streams == 0


def test_events_become_the_changes_the_streams_show() -> None:
    booking, resource, command = uuid4(), uuid4(), uuid4()
    common = {
        "event_id": uuid4(), "command_id": command, "resource_id": resource,
        "accepted_at": NOW, "occurred_at": NOW, "booking_id": booking,
        "principal": "alice", "quantity": 2,
    }  # fmt: skip
    confirmed = changes_of(BookingConfirmed(**common, available=8, version=4))
    rejected = changes_of(BookingRejected(**common, reason=RejectionReason.SOLD_OUT))
    cancelled = changes_of(BookingCancelled(**common, available=10, version=5))

    assert confirmed == [
        BookingChange(booking, "alice", resource, 2, "confirmed", None, NOW),
        SeatsChange(resource, 8, 4, NOW),
    ]
    assert rejected == [BookingChange(booking, "alice", resource, 2, "rejected", "sold_out", NOW)]
    assert [c.final for c in cancelled if isinstance(c, BookingChange)] == [True]
    assert SeatsChange(resource, 10, 5, NOW) in cancelled


def test_the_metrics_count_streams_by_kind_open_opened_refused_and_dropped() -> None:
    registry = CollectorRegistry()
    hub = Hub(max_streams=3, max_streams_per_principal=2, buffer_size=1,
              metrics=HubMetrics(registry))  # fmt: skip
    booking = uuid4()
    slow = hub.subscribe_booking("alice", booking)
    hub.subscribe_principal("alice")
    with pytest.raises(TooManyStreamsError):
        hub.subscribe_seats("alice", uuid4())
    hub.subscribe_seats("bob", uuid4())
    with pytest.raises(TooManyStreamsError):
        hub.subscribe_seats("carol", uuid4())
    hub.publish(change(booking, "confirmed"))
    hub.publish(change(booking, "cancelled"))  # alice's two streams had room for one

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert slow.dropped == "too_slow"
    assert [value("bookify_push_streams_open", kind=k) for k in HubMetrics.KINDS] == [0, 0, 1]
    assert [value("bookify_push_streams_opened_total", kind=k) for k in HubMetrics.KINDS] == [
        1, 1, 1
    ]  # fmt: skip
    assert value("bookify_push_streams_refused_total", kind="seats", limit="principal") == 1
    assert value("bookify_push_streams_refused_total", kind="seats", limit="process") == 1
    assert value("bookify_push_streams_dropped_total", kind="booking", reason="too_slow") == 1
    assert value("bookify_push_streams_dropped_total", kind="principal", reason="too_slow") == 1

    hub.close()

    assert value("bookify_push_streams_open", kind="seats") == 0
    assert value("bookify_push_streams_dropped_total", kind="seats", reason="shutdown") == 1
