"""Bad input gets the documented 4xx with a problem body, never a 5xx, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.stack import Api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def resource_holder() -> dict[str, str]:
    return {}


async def resource(api: Api, holder: dict[str, str]) -> str:
    if "id" not in holder:
        holder["id"] = await api.create_resource(capacity=5)
    return holder["id"]


def body(resource_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    return {"resource_id": resource_id, "quantity": 1, **changes}


CASES: list[tuple[str, Any, int]] = [
    ("malformed-json", b'{"resource_id": ', 422),
    ("not-an-object", b"[1, 2, 3]", 422),
    ("wrong-type", {"quantity": "two"}, 422),
    ("unknown-field", {"colour": "red"}, 422),
    ("quantity-zero", {"quantity": 0}, 422),
    ("quantity-eleven", {"quantity": 11}, 422),
    ("quantity-negative", {"quantity": -1}, 422),
    ("dollar-key", {"$where": "sleep(1000)"}, 422),
    ("dotted-key", {"a.b": 1}, 422),
    ("non-uuid-resource", {"resource_id": "not-a-uuid"}, 422),
    ("unknown-resource", {"resource_id": str(uuid.uuid4())}, 422),
    ("oversize", {"padding": "x" * 70_000}, 413),
]


@pytest.mark.parametrize(("payload", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_booking_requests_get_a_problem_not_a_5xx(
    api: Api, resource_holder: dict[str, str], payload: Any, expected: int
) -> None:
    resource_id = await resource(api, resource_holder)
    headers = {**api.auth("ivan"), "content-type": "application/json"}
    if isinstance(payload, bytes):
        response = await api.http.post("/v1/bookings", content=payload, headers=headers)
    else:
        response = await api.http.post(
            "/v1/bookings", json=body(resource_id, payload), headers=headers
        )
    assert response.status_code == expected, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert {"type", "title", "status"} <= problem.keys()
    assert problem["status"] == expected
    assert "Traceback" not in response.text
    assert await api.available(resource_id) == 5  # nothing was booked


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/bookings/not-a-uuid"),
        ("POST", "/v1/bookings/not-a-uuid/cancel"),
        ("GET", "/v1/resources/%24where"),
    ],
)
async def test_non_uuid_ids_in_the_path_are_422(api: Api, method: str, path: str) -> None:
    response = await api.http.request(
        method, path, headers=api.auth("ivan", "bookings:read bookings:write")
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unknown_ids_are_404(api: Api) -> None:
    unknown = uuid.uuid4()
    assert (await api.booking(str(unknown), "ivan")).status_code == 404
    response = await api.http.get(f"/v1/resources/{unknown}", headers=api.auth("ivan"))
    assert response.status_code == 404
