"""The ticket drop: many principals, few seats, all at once. Never overbook, never lose one."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.stack import Api

pytestmark = pytest.mark.e2e

SEATS = 10
BUYERS = 200


async def test_two_hundred_buyers_for_ten_seats_get_exactly_ten(api: Api) -> None:
    resource = await api.create_resource(capacity=SEATS)
    responses = await asyncio.gather(*(api.book(resource, f"buyer-{i}") for i in range(BUYERS)))
    assert [r.status_code for r in responses] == [202] * BUYERS
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(
            api.wait_terminal(r.json()["id"], f"buyer-{i}", within=30)
            for i, r in enumerate(responses)
        )
    )
    elapsed = time.monotonic() - started
    statuses = [o["status"] for o in outcomes]
    assert statuses.count("confirmed") == SEATS
    assert statuses.count("rejected") == BUYERS - SEATS
    assert {o["reason"] for o in outcomes if o["status"] == "rejected"} == {"sold_out"}
    assert elapsed < 30
    for _ in range(100):
        if await api.available(resource) == 0:
            break
        await asyncio.sleep(0.1)
    assert await api.available(resource) == 0
