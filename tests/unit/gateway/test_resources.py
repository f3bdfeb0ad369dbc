"""POST/GET /v1/resources against fakes."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest

from shared.events import CreateResource

from .conftest import bearer
from .fakes import Fakes
from .problems import assert_problem

ADMIN = "resources:admin bookings:read"


async def test_admin_creates_a_resource_through_kafka_with_202_and_location(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await client.post(
        "/v1/resources", json={"name": "Hall A", "capacity": 100}, headers=bearer("admin", ADMIN)
    )

    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/v1/resources/{body['id']}"
    [command] = fakes.publisher.published
    assert isinstance(command, CreateResource)
    assert (command.resource_id, command.name, command.capacity) == (
        UUID(body["id"]),
        "Hall A",
        100,
    )


async def test_a_just_created_resource_reads_as_fully_available(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/v1/resources", json={"name": "Hall A", "capacity": 7}, headers=bearer("admin", ADMIN)
    )

    response = await client.get(created.headers["location"], headers=bearer("bob", "bookings:read"))

    assert response.status_code == 200
    body = response.json()
    assert (body["capacity"], body["available"]) == (7, 7)
    assert body["updated_at"] is None  # not yet in the read model


async def test_a_resource_in_the_read_model_shows_its_availability(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    rid = uuid4()
    fakes.views.add_resource(rid, capacity=10, available=4)

    response = await client.get(f"/v1/resources/{rid}", headers=bearer("bob", "bookings:read"))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(rid)
    assert (body["capacity"], body["available"]) == (10, 4)
    assert body["updated_at"] is not None


async def test_a_resource_seen_only_through_bookings_reads_from_its_accepted_record(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    created = await client.post(
        "/v1/resources", json={"name": "Hall A", "capacity": 7}, headers=bearer("admin", ADMIN)
    )
    # A booking was projected before ResourceCreated: a view without name or capacity.
    fakes.views.add_resource(UUID(created.json()["id"]), available=5, named=False)

    response = await client.get(created.headers["location"], headers=bearer())

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["capacity"], body["available"]) == ("Hall A", 7, 7)
    assert body["updated_at"] is None  # not yet created in the read model


async def test_a_resource_seen_only_through_bookings_and_never_accepted_here_is_404(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    rid = uuid4()
    fakes.views.add_resource(rid, named=False)

    response = await client.get(f"/v1/resources/{rid}", headers=bearer())

    assert_problem(response, 404, "not-found")


async def test_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/v1/resources/{uuid4()}", headers=bearer()), 404, "not-found")


async def test_listing_walks_every_resource_once_by_cursor(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    ids = [uuid4() for _ in range(5)]
    for rid in ids:
        fakes.views.add_resource(rid)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/resources", params=params, headers=bearer())
        assert response.status_code == 200
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(str(i) for i in ids)
    assert pages == 3


async def test_listing_leaves_out_resources_not_created_yet_and_still_walks_past_them(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    first, unnamed, last = sorted((uuid4() for _ in range(3)), key=str)
    fakes.views.add_resource(first)
    fakes.views.add_resource(unnamed, named=False)
    fakes.views.add_resource(last)

    one = (await client.get("/v1/resources?limit=2", headers=bearer())).json()
    two = (
        await client.get(f"/v1/resources?limit=2&cursor={one['next_cursor']}", headers=bearer())
    ).json()

    assert [item["id"] for item in one["items"]] == [str(first)]
    assert one["next_cursor"] == str(unnamed)
    assert [item["id"] for item in two["items"]] == [str(last)]
    assert two["next_cursor"] is None


async def test_listing_an_empty_catalogue_has_no_next_cursor(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/resources", headers=bearer())

    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"cursor": "nope"}])
async def test_bad_pagination_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert_problem(await client.get("/v1/resources", params=params, headers=bearer()), 422)


@pytest.mark.parametrize("capacity", [0, 100_001, -5, "10", 2.5, None])
async def test_capacity_out_of_range_or_wrong_type_is_422(
    client: httpx.AsyncClient, fakes: Fakes, capacity: object
) -> None:
    response = await client.post(
        "/v1/resources", json={"name": "x", "capacity": capacity}, headers=bearer()
    )

    body = assert_problem(response, 422, "validation-error")
    assert "capacity" in {e["field"] for e in body["errors"]}
    assert fakes.publisher.published == []


async def test_resource_creation_needs_the_admin_scope(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await client.post(
        "/v1/resources",
        json={"name": "x", "capacity": 1},
        headers=bearer("alice", "bookings:read bookings:write"),
    )

    assert_problem(response, 403, "forbidden")
    assert fakes.publisher.published == []


async def test_same_key_same_resource_body_is_one_resource(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    headers = bearer("admin", ADMIN) | {"Idempotency-Key": "create-hall"}
    body = {"name": "Hall", "capacity": 3}

    first = await client.post("/v1/resources", json=body, headers=headers)
    second = await client.post("/v1/resources", json=body, headers=headers)

    assert first.json() == second.json()
    assert len(fakes.publisher.published) == 1
