"""The batched projector: a batch in one write per step, leaving the views one by one would."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry

from consumer.domain import BookingStatus
from consumer.metrics import ConsumerMetrics
from consumer.service_layer import EventHandler
from shared.events import Event
from shared.messaging import Delivery
from tests.messages import deliveries
from tests.support.clock import FakeClock
from tests.unit.consumer.fakes import Events, FakeViewRepository, sample

EVENTS_TOPIC = "bookify.events"


@pytest.fixture
def handle(views: FakeViewRepository, metrics: ConsumerMetrics, clock: FakeClock) -> EventHandler:
    return EventHandler(views, metrics, clock=clock)


def batch(*events: Event) -> list[Delivery]:
    return deliveries(*events, topic=EVENTS_TOPIC)


def story_of(events: Events, count: int) -> tuple[list[Event], list[str]]:
    """A resource of ``count`` seats, then ``count`` confirmations, as booking publishes them."""
    story: list[Event] = [events.created(capacity=count, version=1)]
    bookings = []
    for i in range(count):
        booking_id = uuid4()
        bookings.append(str(booking_id))
        story.append(
            events.confirmed(booking_id, quantity=1, available=count - i - 1, version=i + 2)
        )
    return story, bookings


async def test_a_batch_is_written_in_one_call_per_step_and_shows_every_booking(
    handle: EventHandler, views: FakeViewRepository, metrics: ConsumerMetrics, events: Events
) -> None:
    story, bookings = story_of(events, 5)

    await handle.many(batch(*story))

    assert views.batch_calls == 5  # resources, bookings, lists, notifications, processed marks
    rid = str(events.resource_id)
    assert (views.resources[rid].available, views.resources[rid].version) == (0, 6)
    assert views.resources[rid].name == "Hall A"
    assert all(views.bookings[b].status is BookingStatus.CONFIRMED for b in bookings)
    assert all("on Hall A" in n.text for n in views.notifications.values())
    assert len(views.notifications) == 5
    assert views.resource_reads == 0  # the name came with the batch
    assert sample(metrics, "bookify_booking_e2e_seconds_count") == 6


async def test_a_batch_leaves_the_views_a_one_by_one_application_would(
    metrics: ConsumerMetrics, clock: FakeClock, events: Events
) -> None:
    cancelled_id, rejected_id = uuid4(), uuid4()
    story = [
        events.confirmed(cancelled_id, quantity=2, available=8, version=2),
        events.created(capacity=10, version=1),  # late: still names the resource
        events.rejected(rejected_id, quantity=20),
        events.cancelled(cancelled_id, quantity=2, available=10, version=3),
        events.confirmed(cancelled_id, quantity=2, available=8, version=2),  # redelivered
    ]
    one_by_one, batched = FakeViewRepository(), FakeViewRepository()
    for event in story:
        await EventHandler(one_by_one, metrics, clock=clock)(event)

    await EventHandler(batched, ConsumerMetrics(CollectorRegistry()), clock=clock).many(
        batch(*story)
    )

    assert batched.resources == one_by_one.resources
    assert {k: v.status for k, v in batched.bookings.items()} == {
        str(cancelled_id): BookingStatus.CANCELLED,
        str(rejected_id): BookingStatus.REJECTED,
    }
    assert {k: v.status for k, v in one_by_one.bookings.items()} == {
        k: v.status for k, v in batched.bookings.items()
    }
    assert batched.notifications.keys() == one_by_one.notifications.keys()
    assert batched.lists == one_by_one.lists


async def test_a_principals_list_keeps_each_booking_once_at_its_place_with_its_status(
    handle: EventHandler, views: FakeViewRepository, events: Events
) -> None:
    first, second = uuid4(), uuid4()
    await handle.many(batch(events.confirmed(first, version=2)))
    await handle.many(batch(events.rejected(second), events.cancelled(first, version=3)))
    await handle.many(batch(events.confirmed(first, version=2)))  # redelivered

    assert [(v.booking_id, v.status) for v in views.lists["alice"]] == [
        (str(first), BookingStatus.CANCELLED),
        (str(second), BookingStatus.REJECTED),
    ]


async def test_a_redelivered_batch_is_counted_as_duplicates_and_measured_once(
    handle: EventHandler, views: FakeViewRepository, metrics: ConsumerMetrics, events: Events
) -> None:
    story, _ = story_of(events, 3)
    await handle.many(batch(*story))
    before = dict(views.resources)

    await handle.many(batch(*story))

    assert views.resources == before
    assert sample(metrics, "bookify_booking_e2e_seconds_count") == 4
    duplicates = sample(
        metrics,
        "bookify_consumer_events_total",
        {"type": "BookingConfirmed", "outcome": "duplicate"},
    )
    assert duplicates == 3


async def test_a_resource_named_earlier_is_read_once_then_remembered(
    views: FakeViewRepository, metrics: ConsumerMetrics, clock: FakeClock, events: Events
) -> None:
    await EventHandler(views, metrics, clock=clock).many(batch(events.created(version=1)))
    restarted = EventHandler(views, metrics, clock=clock)  # remembers nothing yet

    for version in (2, 3):
        await restarted.many(
            batch(events.confirmed(uuid4(), quantity=1, available=11 - version, version=version))
        )

    assert views.resource_reads == 1
    assert all("on Hall A" in n.text for n in views.notifications.values())
