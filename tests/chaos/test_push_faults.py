"""Push under faults: every open stream of a 202'd booking ends with its decision.

Each stream opens while its booking is surely pending (the booking service is SIGSTOPped
before the bookings are accepted, proven through /proc), then the fault lands: Kafka frozen
(SIGSTOP) while booking decides, or the consumer killed (SIGKILL) before it. The pending
streams' safety net (re-reading the view every ``push_resync_seconds``) is set past the test,
so only the gateway's own reading of ``bookify.events`` can deliver: it must outlive a frozen
broker, and it never needed the consumer.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from loadtests.chaos.nemesis import landed, process_state
from tests.chaos.conftest import started_own_stack
from tests.chaos.traffic import OwnStack
from tests.otlp import OtlpReceiver
from tests.stack import Api
from tests.support.sse import Reader, events

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

STREAMS = 12
SEATS = 5  # so the streams end both ways: confirmed and rejected
FROZEN_SECONDS = 10.0
RECOVERY = 120.0  # a fail-safe per event: Kafka's clients find a thawed broker in seconds


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[OwnStack]:
    """A stack of this module alone (a test freezes Kafka); the pending streams' resync off."""
    run_dir = tmp_path_factory.mktemp("chaos-push")
    resync_off = {"BOOKIFY_GATEWAY_PUSH_RESYNC_SECONDS": "3600"}
    with started_own_stack(run_dir, otlp, resync_off) as stack:
        yield stack


@pytest.fixture
async def api(own: OwnStack) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=own.target.gateway_url, timeout=30) as http:
        yield Api(http)


@dataclass
class Pending:
    """A booking accepted while booking was stopped, and its stream (``pending`` read)."""

    who: str
    booking_id: str
    stream: Reader


@asynccontextmanager
async def pending_streams(own: OwnStack, api: Api) -> AsyncIterator[list[Pending]]:
    """STREAMS bookings on a resource of SEATS, each accepted and its stream opened (first
    event ``pending``) while booking is stopped; booking stays stopped until the caller
    sends it SIGCONT (or the block ends)."""
    resource = await api.create_resource(capacity=SEATS)
    booking = own.platform["booking"].proc
    assert booking is not None
    booking.send_signal(signal.SIGSTOP)
    try:
        await landed(booking.pid, lambda s: s == "T", "stopped")
        async with AsyncExitStack() as streams:
            opened = []
            for n in range(STREAMS):
                who = f"push-chaos-{uuid.uuid4().hex[:6]}-{n}"
                accepted = await api.book(resource, who)
                assert accepted.status_code == 202, accepted.text
                booking_id = accepted.json()["id"]
                reader = await streams.enter_async_context(
                    events(stream_url(api, booking_id), who, wait=RECOVERY)
                )
                first = await reader.next()
                assert (first.id, first.data["status"]) == ("pending", "pending")
                opened.append(Pending(who, booking_id, reader))
            assert process_state(booking.pid) == "T", "booking ran while the streams opened"
            yield opened
    finally:
        booking.send_signal(signal.SIGCONT)


def stream_url(api: Api, booking_id: str) -> str:
    return str(api.http.base_url.join(f"/v1/bookings/{booking_id}/events"))


async def decisions(opened: list[Pending]) -> list[str]:
    """Each stream's next event: its booking's decision."""
    got = await asyncio.gather(*(p.stream.next() for p in opened))
    assert all(event.id == event.data["status"] for event in got)
    return [event.data["status"] for event in got]


def assert_every_seat_sold_once(statuses: list[str]) -> None:
    assert sorted(statuses) == ["confirmed"] * SEATS + ["rejected"] * (STREAMS - SEATS)


async def test_streams_deliver_every_decision_taken_while_kafka_was_frozen(
    own: OwnStack, api: Api
) -> None:
    kafka = own.infra.process("kafka")
    booking = own.platform["booking"].proc
    assert booking is not None
    async with pending_streams(own, api) as opened:
        kafka.send_signal(signal.SIGSTOP)
        try:
            # The fault landed: the kernel says the JVM is stopped, not merely slow.
            await landed(kafka.pid, lambda s: s == "T", "stopped")
            booking.send_signal(signal.SIGCONT)  # it decides into a frozen broker
            await landed(booking.pid, lambda s: s != "T", "running again")
            await asyncio.sleep(FROZEN_SECONDS)
            assert process_state(kafka.pid) == "T", "Kafka thawed before SIGCONT"
        finally:
            kafka.send_signal(signal.SIGCONT)
        await landed(kafka.pid, lambda s: s not in ("T", ""), "running again")

        statuses = await decisions(opened)

    assert_every_seat_sold_once(statuses)


async def test_streams_deliver_every_decision_while_the_consumer_is_dead(
    own: OwnStack, api: Api
) -> None:
    consumer = own.platform["consumer"]
    booking = own.platform["booking"].proc
    assert consumer.proc is not None
    assert booking is not None
    async with pending_streams(own, api) as opened:
        consumer.proc.kill()
        # The fault landed: the consumer died of the SIGKILL; no view changes from here on.
        assert await asyncio.to_thread(consumer.proc.wait, 10) == -signal.SIGKILL
        booking.send_signal(signal.SIGCONT)

        statuses = await decisions(opened)

        # The read model has none of them: push never went through the consumer. A stream
        # opened now gets the decision from what the gateway's feed saw.
        late = opened[0]
        assert (await api.booking(late.booking_id, late.who)).json()["status"] == "pending"
        async with events(stream_url(api, late.booking_id), late.who) as again:
            assert (await again.next()).data["status"] == statuses[0]
    assert_every_seat_sold_once(statuses)

    consumer.start()  # from this thread: attached services die with their spawner
    await asyncio.to_thread(consumer.wait_ready)
    views = [await api.wait_terminal(p.booking_id, p.who, within=60) for p in opened]
    assert [v["status"] for v in views] == statuses
