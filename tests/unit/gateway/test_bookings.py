"""POST/GET /v1/bookings and cancel, against fakes (DESIGN section 2)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest

from gateway.ports import AcceptedKind, IdempotencyState
from shared.events import CancelBooking, RequestBooking

from .conftest import bearer
from .fakes import Fakes
from .problems import assert_problem


@pytest.fixture
def resource_id(fakes: Fakes) -> UUID:
    rid = uuid4()
    fakes.views.add_resource(rid)
    return rid


async def book(
    client: httpx.AsyncClient, resource_id: UUID, quantity: int = 2, *, who: str = "alice",
    key: str | None = None,
) -> httpx.Response:  # fmt: skip
    headers = bearer(who)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        "/v1/bookings",
        json={"resource_id": str(resource_id), "quantity": quantity},
        headers=headers,
    )


async def test_booking_is_accepted_with_location_once_kafka_acked(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    response = await book(client, resource_id, 3)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["resource_id"] == str(resource_id)
    assert body["quantity"] == 3
    assert response.headers["location"] == f"/v1/bookings/{body['id']}"
    [command] = fakes.publisher.published
    assert isinstance(command, RequestBooking)
    assert command.booking_id == UUID(body["id"])
    assert command.partition_key == resource_id
    assert command.principal == "alice"
    assert command.quantity == 3


async def test_get_right_after_202_says_pending(
    client: httpx.AsyncClient, resource_id: UUID
) -> None:
    accepted = await book(client, resource_id)

    response = await client.get(accepted.headers["location"], headers=bearer())

    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert response.json()["quantity"] == 2


async def test_accepted_record_is_written_for_the_booking(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    body = (await book(client, resource_id)).json()

    record = fakes.accepted.records[UUID(body["id"])]
    assert record.kind is AcceptedKind.BOOKING
    assert record.principal == "alice"
    assert record.command_id == fakes.publisher.published[0].command_id


async def test_booking_a_just_created_resource_is_accepted(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    created = await client.post(
        "/v1/resources", json={"name": "Hall", "capacity": 5}, headers=bearer()
    )
    resource_id = UUID(created.json()["id"])

    response = await book(client, resource_id)

    assert response.status_code == 202


async def test_booking_a_resource_seen_only_through_bookings_is_accepted(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    # Its ResourceCreated is not projected yet, but the booking service knows it.
    resource_id = uuid4()
    fakes.views.add_resource(resource_id, named=False)

    response = await book(client, resource_id)

    assert response.status_code == 202


async def test_unknown_resource_is_a_422_problem_and_nothing_is_published(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await book(client, uuid4())

    assert_problem(response, 422, "unknown-resource")
    assert fakes.publisher.published == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [("confirmed", None), ("rejected", "sold_out"), ("cancelled", None)],
)
async def test_get_returns_the_read_model_status(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID, status: str, reason: str | None
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status=status, reason=reason
    )

    response = await client.get(f"/v1/bookings/{booking_id}", headers=bearer())

    assert response.status_code == 200
    assert response.json()["status"] == status
    assert response.json()["reason"] == reason


async def test_unknown_booking_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/v1/bookings/{uuid4()}", headers=bearer()), 404, "not-found")


async def test_another_principals_booking_is_404_in_the_view(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )

    response = await client.get(f"/v1/bookings/{booking_id}", headers=bearer("mallory"))

    assert_problem(response, 404)


async def test_another_principals_pending_booking_is_404(
    client: httpx.AsyncClient, resource_id: UUID
) -> None:
    location = (await book(client, resource_id, who="alice")).headers["location"]

    assert_problem(await client.get(location, headers=bearer("mallory")), 404)


# ------------------------------------------------------------------ idempotency


async def test_same_key_same_body_returns_the_same_booking_and_response(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    first = await book(client, resource_id, key="k-1")
    second = await book(client, resource_id, key="k-1")

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert first.headers["location"] == second.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len(fakes.publisher.published) == 1


async def test_same_key_different_body_is_a_422_problem(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    await book(client, resource_id, 2, key="k-2")

    response = await book(client, resource_id, 3, key="k-2")

    assert_problem(response, 422, "idempotency-key-reused")
    assert len(fakes.publisher.published) == 1


async def test_the_same_key_from_another_principal_is_a_different_booking(
    client: httpx.AsyncClient, resource_id: UUID
) -> None:
    alice = await book(client, resource_id, key="shared", who="alice")
    bob = await book(client, resource_id, key="shared", who="bob")

    assert alice.json()["id"] != bob.json()["id"]


async def test_concurrent_duplicates_get_one_booking(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    responses = await asyncio.gather(*(book(client, resource_id, key="race") for _ in range(5)))

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.text for r in responses}) == 1


async def test_a_duplicate_arriving_mid_flight_waits_for_the_original_instead_of_republishing(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.publisher.delay = 0.05

    responses = await asyncio.gather(*(book(client, resource_id, key="slow") for _ in range(3)))

    assert len({r.text for r in responses}) == 1
    assert len(fakes.publisher.published) == 1
    assert sorted(r.headers.get("idempotent-replayed", "") for r in responses) == [
        "",
        "true",
        "true",
    ]


async def test_retry_after_a_failed_publish_reuses_the_reserved_ids(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.publisher.fail = True
    assert_problem(await book(client, resource_id, key="retry"), 503)
    [reservation] = fakes.idempotency.records.values()
    assert reservation.state is IdempotencyState.FAILED

    fakes.publisher.fail = False
    response = await book(client, resource_id, key="retry")

    # If the first command did land in Kafka after all, this retry is the same booking.
    assert response.status_code == 202
    assert response.json()["id"] == str(reservation.entity_id)
    assert fakes.publisher.published[0].command_id == reservation.command_id


async def test_a_replay_is_rebuilt_from_the_reservation_once_the_accepted_record_exists(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    first = await book(client, resource_id, key="k-replay")
    [reservation] = fakes.idempotency.records.values()

    second = await book(client, resource_id, key="k-replay")

    # No "completed" write: the accepted record (written after the ack) says it was answered.
    assert reservation.state is IdempotencyState.PENDING
    assert reservation.response is None
    assert UUID(first.json()["id"]) in fakes.accepted.records
    assert (second.text, second.headers["location"]) == (first.text, first.headers["location"])
    assert len(fakes.publisher.published) == 1


async def test_a_completed_record_of_an_older_gateway_replays_its_stored_response(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    await book(client, resource_id, key="k-old")
    [(key_id, reservation)] = fakes.idempotency.records.items()
    stored = {"id": str(reservation.entity_id), "note": "as the older gateway sent it"}
    fakes.idempotency.records[key_id] = replace(
        reservation, state=IdempotencyState.COMPLETED, location="/v1/bookings/x", response=stored
    )

    response = await book(client, resource_id, key="k-old")

    assert response.status_code == 202
    assert response.json() == stored
    assert response.headers["location"] == "/v1/bookings/x"


async def test_accepted_at_is_kept_to_the_millisecond_as_mongodb_stores_it(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.clock.tick = timedelta(microseconds=1234)

    body = (await book(client, resource_id, key="k-ms")).json()

    accepted_at = datetime.fromisoformat(body["accepted_at"])
    assert accepted_at.microsecond % 1000 == 0
    assert fakes.publisher.published[0].accepted_at == accepted_at


# ------------------------------------------------------------------ store round trips


async def test_a_resource_once_seen_is_not_read_again_for_the_next_bookings(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    for _ in range(3):
        assert (await book(client, resource_id)).status_code == 202

    assert fakes.views.resource_reads == 1
    assert fakes.accepted.reads == 0


async def test_a_resource_created_here_is_booked_without_reading_the_store(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    created = await client.post(
        "/v1/resources", json={"name": "Hall", "capacity": 5}, headers=bearer()
    )

    response = await book(client, UUID(created.json()["id"]))

    assert response.status_code == 202
    assert (fakes.views.resource_reads, fakes.accepted.reads) == (0, 0)


async def test_an_unknown_resource_is_not_remembered_as_unknown(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    resource_id = uuid4()
    assert_problem(await book(client, resource_id), 422, "unknown-resource")

    fakes.views.add_resource(resource_id)  # projected a moment later

    assert (await book(client, resource_id)).status_code == 202


async def test_a_keyed_booking_of_a_known_resource_costs_two_store_writes_and_no_read(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    await book(client, resource_id)  # the resource is known from now on
    reads_before = fakes.views.resource_reads

    response = await book(client, resource_id, key="k-lean")

    assert response.status_code == 202
    assert fakes.views.resource_reads == reads_before
    # The reservation and the accepted record; nothing updated afterwards.
    assert (fakes.idempotency.writes, fakes.idempotency.reads) == (1, 0)
    assert (fakes.accepted.writes, fakes.accepted.reads) == (2, 0)


# ------------------------------------------------------------------ MongoDB down


async def test_mongo_failing_at_the_reservation_is_a_503_and_nothing_is_published(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.idempotency.fail = True

    response = await book(client, resource_id, key="k-down")

    body = assert_problem(response, 503, "service-unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert fakes.publisher.published == []
    # Nothing of this try was published, but the key's record, unread, may be an earlier
    # try's that landed: only "unknown" keeps its client retrying to learn the booking.
    assert body["outcome"] == "unknown"


async def told_unknown_while_kafka_hangs(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID, key: str
) -> None:
    """A keyed booking handed to Kafka that never confirmed it: told 503 ``unknown``. The
    publisher is left failing."""
    fakes.publisher.fail = True
    fakes.publisher.outcome_unknown = True
    first = await book(client, resource_id, key=key)
    assert assert_problem(first, 503, "service-unavailable")["outcome"] == "unknown"


async def test_a_retry_whose_key_cannot_be_read_never_says_not_accepted(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    # Found by bookify chaos (seed 509): a keyed booking told "unknown" while Kafka was
    # down, retried with its key while MongoDB was coming back from a freeze, was told
    # "not_accepted"; the first try had landed, and its client never learnt of it.
    await told_unknown_while_kafka_hangs(client, fakes, resource_id, "k-unread")

    fakes.publisher.fail = False
    fakes.idempotency.fail = True
    again = await book(client, resource_id, key="k-unread")

    assert assert_problem(again, 503, "service-unavailable")["outcome"] == "unknown"
    fakes.idempotency.fail = False
    answered = await book(client, resource_id, key="k-unread")
    assert answered.status_code == 202
    [reservation] = fakes.idempotency.records.values()
    assert answered.json()["id"] == str(reservation.entity_id)  # the first try's booking


async def test_mongo_failing_after_the_ack_is_still_a_202_and_the_retry_is_the_same_booking(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.accepted.fail = True

    first = await book(client, resource_id, key="k-after-ack")

    # The command is durable in Kafka: a 503 would be untrue (and a retry without a key
    # would book twice).
    assert first.status_code == 202
    [reservation] = fakes.idempotency.records.values()
    assert first.json()["id"] == str(reservation.entity_id)
    fakes.accepted.fail = False
    response = await book(client, resource_id, key="k-after-ack")
    assert response.status_code == 202
    assert response.json() == first.json()
    # The retry republishes the very command (same ids), which downstream decides once.
    assert {c.command_id for c in fakes.publisher.published} == {reservation.command_id}


# ------------------------------------------------------------------ Kafka down


async def test_publisher_failing_is_503_with_retry_after_and_nothing_accepted(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.publisher.fail = True

    response = await book(client, resource_id)

    body = assert_problem(response, 503, "service-unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert body["retry_after"] >= 1
    assert body["outcome"] == "not_accepted"
    assert fakes.accepted.records == {}
    assert fakes.idempotency.records == {}
    assert "location" not in response.headers


async def test_a_send_kafka_never_confirmed_is_a_503_that_says_the_outcome_is_unknown(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.publisher.fail = True
    fakes.publisher.outcome_unknown = True  # handed to the producer, then no answer

    response = await book(client, resource_id, key="k-unknown")

    body = assert_problem(response, 503, "service-unavailable")
    assert body["outcome"] == "unknown"
    assert "may still be accepted" in body["detail"]
    assert "same Idempotency-Key" in body["detail"]
    assert fakes.accepted.records == {}


async def test_a_retry_of_a_key_whose_earlier_try_is_unknown_never_says_not_accepted(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    # Found by bookify chaos (seed 102): a keyed booking told "unknown", retried with its key
    # while Kafka refused at once, was told "not_accepted"; the first try landed, and its
    # client, told nothing was done, never learnt of the booking it got.
    await told_unknown_while_kafka_hangs(client, fakes, resource_id, "k-retried")

    fakes.publisher.outcome_unknown = False  # this time nothing reaches Kafka at all
    again = await book(client, resource_id, key="k-retried")

    assert assert_problem(again, 503, "service-unavailable")["outcome"] == "unknown"
    fakes.publisher.fail = False
    answered = await book(client, resource_id, key="k-retried")
    assert answered.status_code == 202  # the same key gets the one booking, once Kafka is back
    [command] = fakes.publisher.published
    assert str(command.booking_id) == answered.json()["id"]


async def test_publisher_failing_with_a_key_records_no_response_to_replay(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    fakes.publisher.fail = True

    await book(client, resource_id, key="down")

    assert fakes.accepted.records == {}
    assert all(r.response is None for r in fakes.idempotency.records.values())


# ------------------------------------------------------------------ cancel


async def test_cancelling_a_confirmed_booking_publishes_cancel_and_is_202(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )

    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=bearer())

    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/bookings/{booking_id}"
    [command] = fakes.publisher.published
    assert isinstance(command, CancelBooking)
    assert (command.booking_id, command.resource_id) == (booking_id, resource_id)


async def test_cancelling_a_pending_booking_is_accepted(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    location = (await book(client, resource_id)).headers["location"]

    response = await client.post(f"{location}/cancel", headers=bearer())

    assert response.status_code == 202
    assert isinstance(fakes.publisher.published[-1], CancelBooking)


@pytest.mark.parametrize("status", ["rejected", "cancelled"])
async def test_cancelling_a_finished_booking_is_409(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID, status: str
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(booking_id, principal="alice", resource_id=resource_id, status=status)

    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=bearer())

    assert_problem(response, 409, "booking-not-cancellable")
    assert fakes.publisher.published == []


async def test_cancelling_someone_elses_booking_is_404(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )

    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=bearer("mallory"))

    assert_problem(response, 404)
    assert fakes.publisher.published == []


async def test_cancelling_an_unknown_booking_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(f"/v1/bookings/{uuid4()}/cancel", headers=bearer()), 404)


async def test_cancel_while_kafka_is_down_is_503(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    booking_id = uuid4()
    fakes.views.add_booking(
        booking_id, principal="alice", resource_id=resource_id, status="confirmed"
    )
    fakes.publisher.fail = True

    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=bearer())

    assert_problem(response, 503)
    assert "retry-after" in response.headers
