"""booking killed -9 exactly between a batch's ledger append and its publishes.

The fault switch's kill point makes the process SIGKILL itself at that line, after logging
that it got there, so the crash lands in the one window where the seats are taken in the
ledger and no event has told the read model yet. After a restart every booking must still
be decided exactly once and announced.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from bookify_platform.services import Platform, PlatformConfig
from tests.stack import Api
from tests.support.auth import bearer

pytestmark = pytest.mark.chaos

SEATS = 10
BUYERS = 40


async def ledger_decisions(mongo: Any, config: PlatformConfig, resource: str) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.uri)
    try:
        ledger = client[f"{config.db_prefix}bookify_booking"]["ledger"]
        found = await ledger.find(
            {"resource_id": resource, "kind": {"$in": ["confirmed", "rejected"]}}
        ).to_list()
    finally:
        await client.close()
    return [d["booking_id"] for d in found]


async def test_a_kill_between_append_and_publish_loses_and_doubles_nothing(
    api: Api, stack: Platform, stack_config: PlatformConfig, mongo: Any
) -> None:
    resource = await api.create_resource(capacity=SEATS)
    await api.wait_resource_visible(resource)
    worker = stack["booking"]
    async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
        armed = await http.put(
            "/admin/faults",
            json={"kill_at": "after_append"},
            headers=bearer("chaos", "resources:admin"),
        )
    assert armed.status_code == 200, armed.text

    responses = await asyncio.gather(*(api.book(resource, f"kill-{i}") for i in range(BUYERS)))
    assert [r.status_code for r in responses] == [202] * BUYERS
    assert worker.proc is not None
    code = await asyncio.to_thread(worker.proc.wait, 60)

    # The kill landed where it claims: the process said so, then died of SIGKILL.
    assert code == -signal.SIGKILL
    log = worker.log_path.read_text()
    assert '"event": "fault_kill_point"' in log
    assert '"point": "after_append"' in log
    stored = await ledger_decisions(mongo, stack_config, resource)
    assert stored, "the batch's entries were appended before the kill"
    owners = {r.json()["id"]: f"kill-{i}" for i, r in enumerate(responses)}
    unannounced = [(await api.booking(b, owners[b])).json()["status"] for b in stored]
    assert set(unannounced) == {"pending"}  # stored, and no event told the read model

    worker.start()
    await asyncio.to_thread(worker.wait_ready)
    outcomes = await asyncio.gather(
        *(
            api.wait_terminal(r.json()["id"], f"kill-{i}", within=60)
            for i, r in enumerate(responses)
        )
    )

    statuses = [o["status"] for o in outcomes]
    assert statuses.count("confirmed") == SEATS
    assert statuses.count("rejected") == BUYERS - SEATS
    decided = await ledger_decisions(mongo, stack_config, resource)
    assert sorted(decided) == sorted(owners)  # each booking decided exactly once
    assert await api.available(resource) == 0  # the views agree with the ledger
