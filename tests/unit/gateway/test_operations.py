"""/healthz, /readyz, /metrics and the OpenAPI document."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app

from .conftest import bearer, settings
from .fakes import Fakes
from .problems import assert_problem


async def test_healthz_is_200_without_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_kafka_and_mongo_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"mongodb": True, "kafka": True}


@pytest.mark.parametrize("down", ["kafka", "mongodb"])
async def test_readyz_is_a_503_problem_naming_what_is_down(
    client: httpx.AsyncClient, fakes: Fakes, down: str
) -> None:
    fakes.ready[down] = False

    response = await client.get("/readyz")

    body = assert_problem(response, 503)
    assert body["checks"][down] is False
    assert down in body["detail"]
    assert "retry-after" in response.headers


async def test_healthz_stays_200_when_dependencies_are_down(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.ready = {"mongodb": False, "kafka": False}

    assert (await client.get("/healthz")).status_code == 200


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def test_metrics_count_requests_by_route_template_not_raw_path(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        await client.get(f"/v1/bookings/{uuid4()}", headers=bearer())

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    requests = _samples(response.text, "bookify_http_requests_total")
    assert (
        {"method": "GET", "route": "/v1/bookings/{booking_id}", "status": "404"},
        2.0,
    ) in requests
    assert not any("-" in labels["route"] for labels, _ in requests)  # no uuid in a label
    durations = _samples(response.text, "bookify_http_request_duration_seconds_count")
    assert ({"method": "GET", "route": "/v1/bookings/{booking_id}"}, 2.0) in durations


async def test_metrics_label_413s_with_their_route(client: httpx.AsyncClient) -> None:
    await client.post("/v1/bookings", content=b"x" * 70_000, headers=bearer())

    text = (await client.get("/metrics")).text

    assert (
        {"method": "POST", "route": "/v1/bookings", "status": "413"},
        1.0,
    ) in _samples(text, "bookify_http_requests_total")


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    await client.get("/wp-admin/setup.php")

    text = (await client.get("/metrics")).text

    assert ({"method": "GET", "route": "unmatched", "status": "404"}, 1.0) in _samples(
        text, "bookify_http_requests_total"
    )


async def test_each_app_has_its_own_registry(fakes: Fakes) -> None:
    first = create_app(settings(), overrides=fakes.deps())
    second = create_app(settings(), overrides=fakes.deps())

    assert first.state.runtime.registry is not second.state.runtime.registry


ROUTES = {
    ("post", "/v1/resources"): "202 400 401 403 413 422 429 503",
    ("get", "/v1/resources/{resource_id}"): "200 401 403 404 422 429 503",
    ("get", "/v1/resources"): "200 401 403 422 429 503",
    ("post", "/v1/bookings"): "202 400 401 403 413 422 429 503",
    ("get", "/v1/bookings"): "200 401 403 422 429 503",
    ("get", "/v1/bookings/{booking_id}"): "200 401 403 404 422 429 503",
    ("post", "/v1/bookings/{booking_id}/cancel"): "202 401 403 404 409 413 422 429 503",
    ("put", "/v1/admin/faults"): "200 400 401 403 404 413 422",
}


@pytest.mark.parametrize(("method", "path"), list(ROUTES))
async def test_openapi_declares_every_status_the_route_can_answer(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][path][method]

    assert set(operation["responses"]) == set(ROUTES[(method, path)].split())
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")):
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}
            assert "application/json" not in response["content"]


async def test_openapi_declares_the_idempotency_key_header_and_bearer_auth(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    params = spec["paths"]["/v1/bookings"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params)
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    request_schema = spec["components"]["schemas"]["BookingCreate"]
    assert request_schema["additionalProperties"] is False
