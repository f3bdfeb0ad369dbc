"""Seeding reuses the same resources run after run, and notes the data state a run starts
from; the report says when two compared runs did not start alike."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtests.data import seed_resources
from loadtests.report import start_differences
from shared.auth import AuthSettings, verify_token


@dataclass
class FakeGateway:
    """The resource endpoints as the gateway answers them: creation idempotent per
    (principal, Idempotency-Key), reads from a read model, the list paged."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/resources":
            token = request.headers["authorization"].removeprefix("Bearer ")
            principal = verify_token(AuthSettings(), token).sub
            key = (principal, request.headers["idempotency-key"])
            replayed = key in self.keys
            if not replayed:
                body = json.loads(request.content)
                resource_id = str(uuid.uuid4())
                self.keys[key] = resource_id
                self.resources[resource_id] = {
                    "id": resource_id,
                    "available": body["capacity"],
                    "updated_at": "2026-01-01T00:00:00Z",
                    **body,
                }
            headers = {"location": f"/v1/resources/{self.keys[key]}"}
            if replayed:
                headers["idempotent-replayed"] = "true"
            return httpx.Response(202, headers=headers, json={})
        if request.method == "GET" and path == "/v1/resources":
            ids = sorted(self.resources)
            cursor = request.url.params.get("cursor")
            start = ids.index(cursor) + 1 if cursor else 0
            limit = int(request.url.params["limit"])
            page = ids[start : start + limit]
            more = start + limit < len(ids)
            return httpx.Response(
                200,
                json={
                    "items": [self.resources[i] for i in page],
                    "next_cursor": page[-1] if more else None,
                },
            )
        resource_id = path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=self.resources[resource_id])


def seed(gateway: FakeGateway, run_id: str, count: int = 5) -> Any:
    return seed_resources(
        "http://gateway", run_id, count, transport=httpx.MockTransport(gateway.handle)
    )


def test_a_second_run_reuses_the_resources_the_first_seeded() -> None:
    gateway = FakeGateway()
    first = seed(gateway, "run-1")
    assert first.state.seeded_reused == 0
    assert first.state.resources == 5
    second = seed(gateway, "run-2")
    assert second.ids == first.ids
    assert second.state.seeded_reused == 5
    assert second.state.resources == 5, "nothing added to the store"


def test_the_data_state_counts_every_resource_and_the_seats_taken() -> None:
    gateway = FakeGateway()
    for i in range(230):  # other resources, more than two pages of them
        gateway.resources[f"other-{i:03}"] = {"id": f"other-{i:03}", "capacity": 1}
    ids = seed(gateway, "run-1").ids
    gateway.resources[ids[0]]["available"] -= 7
    gateway.resources[ids[3]]["available"] -= 2
    state = seed(gateway, "run-2").state
    assert (state.resources, state.resources_complete) == (235, True)
    assert state.seats_taken == 9
    assert state.to_dict()["seats_taken"] == 9


def test_runs_that_started_alike_are_not_flagged() -> None:
    state = {"resources": 20, "resources_complete": True, "seats_taken": 0}
    assert start_differences(state, [("run1", dict(state)), ("run2", dict(state))]) == []


def test_runs_that_did_not_start_alike_are_said_so() -> None:
    base = {"resources": 20, "resources_complete": True, "seats_taken": 0}
    later = {"resources": 40, "resources_complete": True, "seats_taken": 1234}
    [line] = start_differences(later, [("run1", base)])
    assert "did not start alike: baseline run1 with 20 resources, 0 seats taken" in line
    assert "this run with 40 resources, 1234 seats taken" in line
    assert "bookify reset" in line
    [unknown] = start_differences(later, [("old", None)])
    assert "old recorded no data state" in unknown
    assert "unknown" in start_differences(None, [("run1", base)])[0]
