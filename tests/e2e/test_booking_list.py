"""GET /v1/bookings end to end: the consumer lists each decision, the gateway pages the list."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.stack import Api

pytestmark = pytest.mark.e2e


async def walk(api: Api, who: str, query: str = "") -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        url = f"/v1/bookings?limit=2{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await api.http.get(url, headers=api.auth(who))
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        if (cursor := response.json()["next_cursor"]) is None:
            return items


async def test_the_callers_decided_bookings_newest_first_with_their_statuses(api: Api) -> None:
    who = f"lister-{uuid.uuid4().hex[:8]}"
    hall, room = await api.create_resource(capacity=3), await api.create_resource(capacity=5)
    decided = []
    for resource in (hall, hall, hall, hall, room):  # the fourth in the hall is sold out
        booking_id = (await api.book(resource, who, quantity=1)).json()["id"]
        decided.append(await api.wait_terminal(booking_id, who))
    first = decided[0]["id"]
    cancel = await api.http.post(f"/v1/bookings/{first}/cancel", headers=api.auth(who))
    assert cancel.status_code == 202

    for _ in range(300):  # the list follows the booking's view in the consumer's same batch
        items = await walk(api, who)
        if items[-1:] and items[-1]["status"] == "cancelled":
            break
        await asyncio.sleep(0.1)

    assert [i["id"] for i in items] == [d["id"] for d in decided][::-1]
    assert [i["status"] for i in items] == [
        "confirmed", "rejected", "confirmed", "confirmed", "cancelled"
    ]  # fmt: skip
    assert [i["id"] for i in await walk(api, who, "&status=rejected")] == [decided[3]["id"]]
    assert [i["id"] for i in await walk(api, who, f"&resource_id={room}")] == [decided[4]["id"]]
    assert await walk(api, f"other-{who}") == []
    bad = await api.http.get("/v1/bookings?cursor=not-ours", headers=api.auth(who))
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
