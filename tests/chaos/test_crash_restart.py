"""kill -9 the booking worker while bookings flow; after a restart nothing is lost or doubled."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from bookify_platform.services import Platform, PlatformConfig
from tests.stack import Api

pytestmark = pytest.mark.chaos

SEATS = 30
BUYERS = 120


async def test_a_crashed_booking_worker_loses_and_duplicates_nothing(
    api: Api, stack: Platform, stack_config: PlatformConfig, mongo: Any
) -> None:
    resource = await api.create_resource(capacity=SEATS)

    async def buy(i: int) -> httpx.Response:
        await asyncio.sleep(i * 0.02)  # a steady flow over ~2.4 s
        return await api.book(resource, f"crash-{i}")

    flow = asyncio.gather(*(buy(i) for i in range(BUYERS)))
    await asyncio.sleep(0.8)
    stack["booking"].kill()
    await asyncio.sleep(1.0)
    stack["booking"].start()
    await asyncio.to_thread(stack["booking"].wait_ready)
    responses = await flow

    assert [r.status_code for r in responses] == [202] * BUYERS  # the gateway never noticed
    outcomes = await asyncio.gather(
        *(
            api.wait_terminal(r.json()["id"], f"crash-{i}", within=60)
            for i, r in enumerate(responses)
        )
    )
    statuses = [o["status"] for o in outcomes]
    assert statuses.count("confirmed") == SEATS
    assert statuses.count("rejected") == BUYERS - SEATS

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.uri)
    try:
        ledger = client[f"{stack_config.db_prefix}bookify_booking"]["ledger"]
        decisions = await ledger.find(
            {"resource_id": resource, "kind": {"$in": ["confirmed", "rejected"]}}
        ).to_list()
    finally:
        await client.close()
    assert sorted(d["booking_id"] for d in decisions) == sorted(r.json()["id"] for r in responses)
