"""What every service's subscriber asks of the broker (shared.kafka.subscribe)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from booking.bootstrap import bootstrap as booking_bootstrap
from booking.config import BookingSettings
from consumer.bootstrap import bootstrap as consumer_bootstrap
from consumer.config import ConsumerSettings


def fetch_waits(broker: KafkaBroker) -> list[int]:
    return [s._connection_args["fetch_max_wait_ms"] for s in broker.subscribers]  # type: ignore[attr-defined]


def test_an_idle_fetch_is_held_briefly_by_default() -> None:
    # aiokafka's 500 ms would keep a hot partition waiting behind a fetch of idle ones.
    assert BookingSettings().fetch_max_wait_ms == ConsumerSettings().fetch_max_wait_ms == 25


def test_each_subscriber_fetches_with_the_wait_of_its_settings() -> None:
    booking = booking_bootstrap(BookingSettings(environment="test", fetch_max_wait_ms=40))
    consumer = consumer_bootstrap(ConsumerSettings(environment="test", fetch_max_wait_ms=40))

    assert fetch_waits(booking.broker) == [40]
    assert fetch_waits(consumer.broker) == [40]
