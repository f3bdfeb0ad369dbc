"""GET /v1/bookings, the caller's own list, against fakes (the list as the consumer keeps it)."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest

from gateway.schemas import encode_list_cursor
from gateway.use_cases import LIST_READS_MAX

from .conftest import bearer
from .fakes import Fakes
from .problems import assert_problem, field_names


def decided(fakes: Fakes, count: int, *, resource_id: UUID, status: str = "confirmed",
            principal: str = "alice") -> list[str]:  # fmt: skip
    ids = [uuid4() for _ in range(count)]
    for booking_id in ids:
        fakes.views.add_booking(
            booking_id, principal=principal, resource_id=resource_id, status=status
        )
    return [str(b) for b in ids]


async def walk(
    client: httpx.AsyncClient, query: str, who: str = "alice"
) -> list[dict[str, object]]:
    """Every page of ``query`` by next_cursor; the pages' items, in order."""
    pages, cursor = [], None
    while True:
        url = f"/v1/bookings?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=bearer(who))
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return [item for page in pages for item in page["items"]]


async def test_the_callers_bookings_newest_first_each_once_by_cursor(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    resource = uuid4()
    mine = decided(fakes, 7, resource_id=resource)
    decided(fakes, 3, resource_id=resource, principal="bob")

    first = (await client.get("/v1/bookings?limit=3", headers=bearer())).json()
    items = await walk(client, "limit=3")

    assert [i["id"] for i in first["items"]] == mine[::-1][:3]
    assert [i["id"] for i in items] == mine[::-1]
    assert {i["resource_id"] for i in items} == {str(resource)}
    assert fakes.views.list_reads == 3 + 7  # the first page, then each entry once


async def test_a_cancellation_shows_in_the_bookings_place(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    resource = uuid4()
    older, newer = decided(fakes, 2, resource_id=resource)
    fakes.views.add_booking(UUID(older), principal="alice", resource_id=resource,
                            status="cancelled")  # fmt: skip

    items = (await client.get("/v1/bookings", headers=bearer())).json()["items"]

    assert [(i["id"], i["status"]) for i in items] == [(newer, "confirmed"), (older, "cancelled")]


async def test_filters_by_status_and_resource_across_pages(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    hall, room = uuid4(), uuid4()
    confirmed_in_hall = decided(fakes, 3, resource_id=hall)
    rejected_in_hall = decided(fakes, 2, resource_id=hall, status="rejected")
    confirmed_in_room = decided(fakes, 4, resource_id=room)

    rejected = await walk(client, "limit=1&status=rejected")
    in_room = await walk(client, f"limit=2&resource_id={room}")
    both = await walk(client, f"limit=2&status=confirmed&resource_id={hall}")

    assert [i["id"] for i in rejected] == rejected_in_hall[::-1]
    assert [i["id"] for i in in_room] == confirmed_in_room[::-1]
    assert [i["id"] for i in both] == confirmed_in_hall[::-1]


async def test_a_rare_match_costs_a_page_a_bounded_number_of_reads(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    resource = uuid4()
    [oldest] = decided(fakes, 1, resource_id=resource, status="rejected")
    decided(fakes, LIST_READS_MAX + 10, resource_id=resource)

    first = (await client.get("/v1/bookings?status=rejected", headers=bearer())).json()
    reads = fakes.views.list_reads
    rest = await walk(client, f"status=rejected&cursor={first['next_cursor']}")

    assert first["items"] == []
    assert first["next_cursor"] is not None
    assert reads == LIST_READS_MAX
    assert [i["id"] for i in rest] == [oldest]


async def test_no_bookings_is_an_empty_last_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/bookings", headers=bearer())

    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "cursor",
    ["x", "YjEuMA", "b1.5", encode_list_cursor(5) + "A", "a" * 41, encode_list_cursor(0)],
)
async def test_a_cursor_this_api_did_not_give_is_a_422_problem(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get(f"/v1/bookings?cursor={cursor}", headers=bearer())

    assert field_names(assert_problem(response, 422)) == {"cursor"}


@pytest.mark.parametrize(("query", "field"), [("status=pending", "status"),
                                               ("resource_id=nope", "resource_id"),
                                               ("limit=101", "limit")])  # fmt: skip
async def test_bad_filters_are_422_problems_naming_the_parameter(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/v1/bookings?{query}", headers=bearer())

    assert field_names(assert_problem(response, 422)) == {field}


async def test_listing_needs_a_token_with_the_read_scope(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/bookings"), 401)
    assert_problem(await client.get("/v1/bookings", headers=bearer(scope="bookings:write")), 403)
