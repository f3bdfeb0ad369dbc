"""Hostile and broken requests: always a 4xx application/problem+json, never a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway.adapters import safe_document
from gateway.app import create_app
from gateway.ports import UnsafeDocumentError
from shared.auth import AuthSettings
from shared.events import Command
from tests.support import auth

from .conftest import AUTH, bearer, settings
from .fakes import Fakes
from .problems import assert_problem, field_names


@pytest.fixture
def resource_id(fakes: Fakes) -> UUID:
    rid = uuid4()
    fakes.views.add_resource(rid)
    return rid


async def post_booking(client: httpx.AsyncClient, content: bytes | str) -> httpx.Response:
    headers = bearer() | {"Content-Type": "application/json"}
    return await client.post("/v1/bookings", content=content, headers=headers)


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize(
    "content", ['{"resource_id": ', "not json", "", "[1, 2]", '"a string"', "null"]
)
async def test_malformed_or_non_object_json_is_422(
    client: httpx.AsyncClient, fakes: Fakes, content: str
) -> None:
    assert_problem(await post_booking(client, content), 422, "validation-error")
    assert fakes.publisher.published == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}], ids=["none", "bad"])
async def test_malformed_json_without_a_valid_token_is_401_not_422(
    client: httpx.AsyncClient, fakes: Fakes, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/bookings",
        content='{"quantity": 1,',
        headers={"content-type": "application/json", **headers},
    )

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert fakes.publisher.published == []


@pytest.mark.parametrize("path", ["/v1/resources", "/v1/bookings"])
async def test_a_body_that_is_not_utf8_is_a_400_problem(
    client: httpx.AsyncClient, path: str
) -> None:
    # As a schema-driven fuzzer sends it; the status is in the route's OpenAPI document.
    response = await client.post(
        path,
        content=b'{"name": "\xff\xfe"}',
        headers={"content-type": "application/json", **bearer()},
    )

    assert_problem(response, 400)


async def test_malformed_json_says_so(client: httpx.AsyncClient) -> None:
    body = assert_problem(await post_booking(client, '{"quantity": 1,'), 422)

    assert body["detail"] == "the request body is not valid JSON"
    assert body["errors"][0]["type"] == "json_invalid"


async def test_absurdly_nested_json_is_a_4xx_problem_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await post_booking(client, "[" * 30_000)

    assert_problem(response, response.status_code)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("content_type", ["text/plain", None])
async def test_json_sent_with_another_content_type_is_422(
    client: httpx.AsyncClient, resource_id: UUID, content_type: str | None
) -> None:
    headers = bearer() | ({"Content-Type": content_type} if content_type else {})
    content = f'{{"resource_id": "{resource_id}", "quantity": 1}}'

    response = await client.post("/v1/bookings", content=content, headers=headers)

    assert_problem(response, 422)


@pytest.mark.parametrize("quantity", [0, 11, -1])
async def test_quantity_outside_1_to_10_is_422_naming_the_field(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID, quantity: int
) -> None:
    body = {"resource_id": str(resource_id), "quantity": quantity}

    response = await client.post("/v1/bookings", json=body, headers=bearer())

    problem = assert_problem(response, 422, "validation-error")
    assert field_names(problem) == {"quantity"}
    assert fakes.publisher.published == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource_id": "R", "quantity": "2"}, "quantity"),
        ({"quantity": 2.5}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": [2]}, "quantity"),
        ({"resource_id": 12345}, "resource_id"),
        ({"resource_id": "not-a-uuid"}, "resource_id"),
        ({"resource_id": None}, "resource_id"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    client: httpx.AsyncClient, resource_id: UUID, body: dict[str, object], field: str
) -> None:
    full = {"resource_id": str(resource_id), "quantity": 2} | body
    if full["resource_id"] == "R":
        full["resource_id"] = str(resource_id)

    response = await client.post("/v1/bookings", json=full, headers=bearer())

    assert field in field_names(assert_problem(response, 422))


async def test_missing_fields_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bookings", json={}, headers=bearer())

    assert field_names(assert_problem(response, 422)) == {"resource_id", "quantity"}


@pytest.mark.parametrize("key", ["note", "$where", "$set", "a.b", "principal"])
async def test_unknown_and_operator_like_fields_are_422_and_never_stored(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID, key: str
) -> None:
    body = {"resource_id": str(resource_id), "quantity": 1, key: {"$gt": ""}}

    response = await client.post("/v1/bookings", json=body, headers=bearer())

    problem = assert_problem(response, 422)
    assert key in field_names(problem)
    assert fakes.publisher.published == []
    assert fakes.accepted.records == {}
    assert fakes.idempotency.records == {}


async def test_operator_like_keys_in_a_resource_body_are_422(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = {"name": "x", "capacity": 1, "$where": "sleep(1000)"}

    assert_problem(await client.post("/v1/resources", json=body, headers=bearer()), 422)
    assert fakes.publisher.published == []


@pytest.mark.parametrize("doc", [{"$where": 1}, {"a.b": 1}, {"ok": {"$gt": 1}}])
def test_the_storage_guard_refuses_operator_like_keys_at_any_depth(doc: dict[str, object]) -> None:
    with pytest.raises(UnsafeDocumentError):
        safe_document(doc)


def test_the_storage_guard_passes_plain_documents() -> None:
    doc = {"_id": "x", "response": {"id": "y", "status": "pending"}}
    assert safe_document(doc) is doc


async def test_body_over_64_kib_by_content_length_is_413(
    client: httpx.AsyncClient, fakes: Fakes, resource_id: UUID
) -> None:
    padding = "x" * (64 * 1024)
    content = f'{{"resource_id": "{resource_id}", "quantity": 1, "pad": "{padding}"}}'

    response = await post_booking(client, content)

    assert_problem(response, 413, "payload-too-large")
    assert fakes.publisher.published == []


async def test_streamed_body_over_64_kib_without_content_length_is_413(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    headers = bearer() | {"Content-Type": "application/json"}
    response = await client.post("/v1/bookings", content=chunks(), headers=headers)

    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")
    assert fakes.publisher.published == []


async def test_the_fault_switch_answers_an_oversized_body_with_the_413_it_documents(
    client: httpx.AsyncClient,
) -> None:
    content = '{"latency_ms": 1, "pad": "' + "x" * (64 * 1024) + '"}'
    headers = bearer() | {"Content-Type": "application/json"}

    response = await client.put("/v1/admin/faults", content=content, headers=headers)

    assert_problem(response, 413, "payload-too-large")


async def test_a_body_on_a_get_is_never_read_so_it_is_never_a_413(
    client: httpx.AsyncClient, resource_id: UUID
) -> None:
    response = await client.request(
        "GET", f"/v1/resources/{resource_id}", content="x" * (65 * 1024), headers=bearer()
    )

    assert response.status_code == 200


async def test_body_just_under_the_limit_is_parsed_normally(
    client: httpx.AsyncClient, resource_id: UUID
) -> None:
    body = f'{{"resource_id": "{resource_id}", "quantity": 1}}'
    content = body + " " * (64 * 1024 - len(body))

    response = await post_booking(client, content)

    assert response.status_code == 202


# ------------------------------------------------------------------ paths and headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/bookings/not-a-uuid"),
        ("GET", "/v1/bookings/123"),
        ("POST", "/v1/bookings/%24where/cancel"),
        ("GET", "/v1/resources/abc"),
    ],
)
async def test_non_uuid_ids_in_the_path_are_422(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=bearer())

    assert field_names(assert_problem(response, 422)) == {
        "booking_id" if "bookings" in path else "resource_id"
    }


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\tkey"])
async def test_an_invalid_idempotency_key_is_422(
    client: httpx.AsyncClient, resource_id: UUID, key: str
) -> None:
    headers = bearer() | {"Idempotency-Key": key}
    body = {"resource_id": str(resource_id), "quantity": 1}

    response = await client.post("/v1/bookings", json=body, headers=headers)

    assert assert_problem(response, 422)["errors"][0]["loc"][0] == "header"


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here", headers=bearer()), 404)


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/v1/bookings", headers=bearer()), 405)


# ------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/resources"),
        ("GET", f"/v1/resources/{uuid4()}"),
        ("GET", "/v1/resources"),
        ("POST", "/v1/bookings"),
        ("GET", f"/v1/bookings/{uuid4()}"),
        ("POST", f"/v1/bookings/{uuid4()}/cancel"),
    ],
)
async def test_missing_token_is_401_with_bearer_challenge(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={})

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        auth.token(
            "a", "x", settings=AuthSettings(jwt_secret="another-secret-0123456789abcdef0123")
        ),
        auth.token("alice", "bookings:read", settings=AUTH, ttl=timedelta(seconds=-60)),
        auth.token("alice", "bookings:read", settings=AUTH, aud=None),  # no audience
        auth.token("alice", settings=AUTH, scope=None),  # no scope
        # A principal longer than a command can carry (it was a 500 once the body was valid).
        auth.token("x" * 201, "bookings:read bookings:write", settings=AUTH),
    ],
    ids=["garbage", "wrong-secret", "expired", "no-aud", "no-scope", "sub-too-long"],
)
async def test_invalid_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(
        f"/v1/bookings/{uuid4()}", headers={"Authorization": f"Bearer {token}"}
    )

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_principal_too_long_for_a_command_is_401_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    token = auth.token("x" * 201, "resources:admin", settings=AUTH)

    response = await client.post(
        "/v1/resources",
        json={"name": "Hall", "capacity": 5},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert_problem(response, 401)


async def test_non_bearer_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/resources", headers={"Authorization": "Basic YWxpY2U6eA=="})

    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/resources", "bookings:read bookings:write"),
        ("GET", f"/v1/resources/{uuid4()}", "bookings:write"),
        ("GET", "/v1/resources", "resources:admin"),
        ("POST", "/v1/bookings", "bookings:read"),
        ("GET", f"/v1/bookings/{uuid4()}", "bookings:write"),
        ("POST", f"/v1/bookings/{uuid4()}/cancel", "bookings:read"),
    ],
)
async def test_valid_token_without_the_scope_is_403(
    client: httpx.AsyncClient, fakes: Fakes, method: str, path: str, scope: str
) -> None:
    response = await client.request(method, path, headers=bearer("alice", scope))

    assert_problem(response, 403, "forbidden")
    assert "insufficient_scope" in response.headers["www-authenticate"]
    assert fakes.publisher.published == []


# ------------------------------------------------------------------ rate limit


async def test_a_principal_over_its_rate_gets_429_with_retry_after(fakes: Fakes) -> None:
    app = create_app(
        settings(rate_limit_per_second=0.5, rate_limit_burst=2), overrides=fakes.deps()
    )
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://g") as c,
    ):
        statuses = [
            (await c.get("/v1/resources", headers=bearer("greedy"))).status_code for _ in range(2)
        ]
        limited = await c.get("/v1/resources", headers=bearer("greedy"))
        other = await c.get("/v1/resources", headers=bearer("polite"))

    assert statuses == [200, 200]
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200


# ------------------------------------------------------------------ the unexpected


class ExplodingPublisher:
    async def publish(self, command: Command) -> None:
        raise RuntimeError("secret internals: /etc/passwd line 42")


async def test_an_unexpected_error_is_a_500_problem_without_internals(
    fakes: Fakes, resource_id: UUID
) -> None:
    deps = fakes.deps()
    deps.publisher = ExplodingPublisher()
    app = create_app(settings(), overrides=deps)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://g") as c,
    ):
        body = {"resource_id": str(resource_id), "quantity": 1}
        response = await c.post("/v1/bookings", json=body, headers=bearer())

    assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
