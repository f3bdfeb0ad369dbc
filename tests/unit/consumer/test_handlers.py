"""EventHandler against the in-memory views: what the views show, and what is measured once."""

from __future__ import annotations

from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pymongo.errors import AutoReconnect

from consumer.domain import BookingStatus
from consumer.metrics import ConsumerMetrics
from consumer.service_layer import EventHandler
from shared.events import RejectionReason
from tests.support.clock import FakeClock
from tests.unit.consumer.fakes import Events, FakeViewRepository, sample

E2E_COUNT = "bookify_booking_e2e_seconds_count"
E2E_SUM = "bookify_booking_e2e_seconds_sum"


@pytest.fixture
def handle(views: FakeViewRepository, metrics: ConsumerMetrics, clock: FakeClock) -> EventHandler:
    return EventHandler(views, metrics, clock=clock)


async def test_confirmed_booking_is_visible_with_reduced_availability_and_a_notification(
    handle: EventHandler, views: FakeViewRepository, events: Events
) -> None:
    booking_id = uuid4()
    confirmed = events.confirmed(booking_id, quantity=2, available=8, version=2)

    await handle(events.created(capacity=10, version=1))
    await handle(confirmed)

    rid = str(events.resource_id)
    assert views.bookings[str(booking_id)].status is BookingStatus.CONFIRMED
    assert (views.resources[rid].available, views.resources[rid].version) == (8, 2)
    assert views.resources[rid].name == "Hall A"
    note = views.notifications[str(confirmed.event_id)]
    assert note.text == f"Booking {booking_id} confirmed: 2 seat(s) on Hall A"
    assert note.principal == "alice"


async def test_rejected_booking_shows_its_reason_and_leaves_availability_alone(
    handle: EventHandler, views: FakeViewRepository, events: Events
) -> None:
    booking_id = uuid4()
    await handle(events.created(capacity=1, version=1))

    await handle(events.rejected(booking_id, quantity=2, reason=RejectionReason.SOLD_OUT))

    view = views.bookings[str(booking_id)]
    assert (view.status, view.reason) == (BookingStatus.REJECTED, "sold_out")
    assert views.resources[str(events.resource_id)].available == 1
    assert len(views.notifications) == 1


async def test_cancellation_returns_the_seats_and_is_final(
    handle: EventHandler, views: FakeViewRepository, events: Events
) -> None:
    booking_id = uuid4()
    confirmed = events.confirmed(booking_id, available=8, version=2)
    await handle(events.created(capacity=10, version=1))
    await handle(confirmed)

    await handle(events.cancelled(booking_id, available=10, version=3))
    # The confirmation arrives again, as a fresh delivery the dedupe has not seen.
    views.processed.pop(str(confirmed.event_id))
    await handle(confirmed)

    assert views.bookings[str(booking_id)].status is BookingStatus.CANCELLED
    assert views.resources[str(events.resource_id)].available == 10
    assert views.resources[str(events.resource_id)].version == 3


async def test_redelivered_event_changes_nothing_and_is_measured_once(
    handle: EventHandler,
    views: FakeViewRepository,
    metrics: ConsumerMetrics,
    clock: FakeClock,
    events: Events,
) -> None:
    confirmed = events.confirmed(uuid4())
    clock.advance(0.25)
    await handle(confirmed)
    before = (dict(views.bookings), dict(views.resources), dict(views.notifications))

    clock.advance(10)
    await handle(confirmed)
    await handle(confirmed)

    assert (views.bookings, views.resources, views.notifications) == before
    assert sample(metrics, E2E_COUNT) == 1
    assert sample(metrics, E2E_SUM) == pytest.approx(0.25)
    labels = {"type": "BookingConfirmed"}
    assert sample(metrics, "bookify_consumer_events_total", {**labels, "outcome": "applied"}) == 1
    assert sample(metrics, "bookify_consumer_events_total", {**labels, "outcome": "duplicate"}) == 2


async def test_e2e_latency_is_the_time_from_acceptance_to_the_views_being_written(
    handle: EventHandler, metrics: ConsumerMetrics, clock: FakeClock, events: Events
) -> None:
    clock.advance(0.04)

    await handle(events.created())

    assert sample(metrics, E2E_COUNT) == 1
    assert sample(metrics, E2E_SUM) == pytest.approx(0.04)
    assert sample(metrics, "bookify_booking_e2e_seconds_bucket", {"le": "0.05"}) == 1
    assert sample(metrics, "bookify_booking_e2e_seconds_bucket", {"le": "0.025"}) == 0


async def test_event_accepted_by_a_clock_ahead_of_ours_is_measured_as_zero_not_negative(
    handle: EventHandler, metrics: ConsumerMetrics, clock: FakeClock, events: Events
) -> None:
    clock.advance(-2)

    await handle(events.created())

    assert sample(metrics, E2E_SUM) == 0


async def test_older_event_after_a_newer_one_does_not_roll_availability_back(
    handle: EventHandler, views: FakeViewRepository, events: Events
) -> None:
    first, second = uuid4(), uuid4()
    await handle(events.created(capacity=10, version=1))
    await handle(events.confirmed(second, available=5, version=3))

    await handle(events.confirmed(first, available=8, version=2))

    resource = views.resources[str(events.resource_id)]
    assert (resource.available, resource.version) == (5, 3)
    assert views.bookings[str(first)].status is BookingStatus.CONFIRMED


@pytest.mark.parametrize(
    "crash_in", ["apply_booking", "list_bookings", "add_notification", "mark_processed"]
)
async def test_crash_between_steps_is_repaired_by_redelivery_and_measured_once(
    handle: EventHandler,
    views: FakeViewRepository,
    metrics: ConsumerMetrics,
    events: Events,
    crash_in: str,
) -> None:
    booking_id = uuid4()
    confirmed = events.confirmed(booking_id, available=8, version=2)
    views.fail_once[crash_in] = AutoReconnect("mongo went away")

    with pytest.raises(AutoReconnect):
        await handle(confirmed)
    await handle(confirmed)  # the redelivery after the crash

    assert views.bookings[str(booking_id)].status is BookingStatus.CONFIRMED
    assert [v.booking_id for v in views.lists["alice"]] == [str(booking_id)]
    assert views.resources[str(events.resource_id)].available == 8
    assert list(views.notifications) == [str(confirmed.event_id)]
    assert sample(metrics, E2E_COUNT) == 1


async def test_two_consumers_sharing_a_partition_measure_the_event_once(
    views: FakeViewRepository, metrics: ConsumerMetrics, clock: FakeClock, events: Events
) -> None:
    """A zombie that passed the dedupe check before the other finished still counts nothing."""
    confirmed = events.confirmed(uuid4())
    zombie = EventHandler(views, metrics, clock=clock)
    await zombie(confirmed)
    views.stale_dedupe = True

    await EventHandler(views, metrics, clock=clock)(confirmed)

    assert sample(metrics, E2E_COUNT) == 1
    assert len(views.notifications) == 1


async def test_exemplar_carries_the_trace_id_of_the_active_span(
    handle: EventHandler, metrics: ConsumerMetrics, events: Events
) -> None:
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("process") as span:
        await handle(events.created())
        trace_id = format(span.get_span_context().trace_id, "032x")

    exemplars = [
        s.exemplar
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "bookify_booking_e2e_seconds_bucket" and s.exemplar is not None
    ]
    assert [e.labels for e in exemplars] == [{"trace_id": trace_id}]


async def test_no_exemplar_without_an_active_span(
    handle: EventHandler, metrics: ConsumerMetrics, events: Events
) -> None:
    await handle(events.created())

    assert not [
        s
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "bookify_booking_e2e_seconds_bucket" and s.exemplar is not None
    ]
