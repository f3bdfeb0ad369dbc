"""The fast lane: its routes answer exactly what FastAPI answers, valid or not, past FastAPI's
routing, and the OpenAPI document is the one FastAPI made before the lane existed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from httpx import ASGITransport, AsyncClient
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from gateway.app import create_app
from gateway.deps import get_deps
from gateway.fast_lane import FastLane, LaneRoute
from gateway.ratelimit import RateLimiter
from tests.unit.gateway.conftest import bearer, settings, without_lane

from .fakes import Fakes

SNAPSHOT = Path(__file__).with_name("openapi.json")
RESOURCE = UUID("00000000-0000-4000-8000-000000000001")
OTHER = UUID("00000000-0000-4000-8000-000000000002")
CONFIRMED = UUID("00000000-0000-4000-8000-000000000003")  # alice's bookings
REJECTED = UUID("00000000-0000-4000-8000-000000000004")
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class CountingLimiter:
    """The app's own limiter, counting the requests charged against it."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.charged = 0

    async def acquire(self, principal: str) -> float:
        self.charged += 1
        return await self.limiter.acquire(principal)


Gateway = tuple[AsyncClient, Fakes, CountingLimiter]


@pytest.fixture
async def gateways() -> AsyncIterator[list[Gateway]]:
    """Two gateways on their own fakes, one with the lane and one without."""
    (lane, lane_fakes), (plain, plain_fakes) = build(lane=True), build()
    limiters = []
    for app in (lane, plain):
        app.state.limiter = CountingLimiter(app.state.limiter)
        limiters.append(app.state.limiter)
    async with (
        LifespanManager(lane) as one,
        LifespanManager(plain) as two,
        AsyncClient(transport=ASGITransport(one.app), base_url="http://gateway") as a,
        AsyncClient(transport=ASGITransport(two.app), base_url="http://gateway") as b,
    ):
        yield [(a, lane_fakes, limiters[0]), (b, plain_fakes, limiters[1])]


def build(*, lane: bool = False) -> tuple[FastAPI, Fakes]:
    fakes = Fakes()
    fakes.views.add_resource(RESOURCE)
    fakes.views.add_resource(OTHER)
    for booking, status in ((CONFIRMED, "confirmed"), (REJECTED, "rejected")):
        fakes.views.add_booking(booking, principal="alice", resource_id=RESOURCE, status=status)
    app = create_app(
        settings(rate_limit_burst=4, rate_limit_per_second=0.001), overrides=fakes.deps()
    )
    return (app if lane else without_lane(app)), fakes


def answer(response: Any) -> tuple[int, Any, dict[str, str]]:
    """Status, body and headers, with the ids the gateway made up each time named alike."""
    known = {str(u): f"<{i}>" for i, u in enumerate((RESOURCE, OTHER, CONFIRMED, REJECTED))}

    def named(text: str) -> str:
        return UUID_PATTERN.sub(lambda m: known.get(m.group(), "<new id>"), text)

    body = json.loads(named(response.text)) if response.content else None
    return response.status_code, body, {k: named(v) for k, v in response.headers.items()}


BOOKING = {"resource_id": str(RESOURCE), "quantity": 2}
JSON = {"content-type": "application/json"}
# (method, path, request); each runs with a valid token unless it brings its own.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/bookings", {"json": BOOKING}),
    ("POST", "/v1/bookings", {"json": BOOKING, "headers": {"Idempotency-Key": "k-1"}}),
    (
        "POST",
        "/v1/bookings",
        {"json": {**BOOKING, "quantity": 3}, "headers": {"Idempotency-Key": "k-1"}},
    ),
    ("POST", "/v1/bookings", {"json": BOOKING, "headers": {"Idempotency-Key": "has space"}}),
    ("POST", "/v1/bookings", {"json": BOOKING, "headers": {"Idempotency-Key": ""}}),
    ("POST", "/v1/bookings", {"json": {**BOOKING, "quantity": "2"}}),  # strict: not a count
    ("POST", "/v1/bookings", {"json": {**BOOKING, "quantity": 0}}),
    ("POST", "/v1/bookings", {"json": {**BOOKING, "extra": 1}}),
    ("POST", "/v1/bookings", {"json": {"resource_id": "nope", "quantity": 1}}),
    ("POST", "/v1/bookings", {"json": {**BOOKING, "resource_id": str(uuid4())}}),  # unknown
    ("POST", "/v1/bookings", {"json": [1, 2]}),
    ("POST", "/v1/bookings", {"content": b"{not json", "headers": JSON}),
    ("POST", "/v1/bookings", {"content": b"", "headers": JSON}),
    ("POST", "/v1/bookings", {"content": b'{"resource_id": "\xff\xfe"}', "headers": JSON}),
    (
        "POST",
        "/v1/bookings",
        {"content": json.dumps(BOOKING).encode(), "headers": {"content-type": "text/plain"}},
    ),
    ("POST", "/v1/bookings", {"content": json.dumps(BOOKING).encode()}),  # no content-type
    (
        "POST",
        "/v1/bookings",
        {"json": BOOKING, "headers": {"content-type": "application/json; charset=UTF-8"}},
    ),
    ("POST", "/v1/bookings", {"json": BOOKING, "anonymous": True}),
    ("POST", "/v1/bookings", {"json": {**BOOKING, "quantity": 0}, "anonymous": True}),
    ("POST", "/v1/bookings", {"json": BOOKING, "headers": {"Authorization": "Bearer nonsense"}}),
    (
        "POST",
        "/v1/bookings",
        {"json": BOOKING, "headers": bearer("scoped-1", scope="bookings:read")},
    ),
    ("POST", "/v1/bookings", {"json": {"x" * 70_000: 1}}),  # over the body limit
    ("POST", "/v1/resources", {"json": {"name": "hall", "capacity": 5}}),
    (
        "POST",
        "/v1/resources",
        {"json": {"name": "hall", "capacity": 5}, "headers": {"Idempotency-Key": "r-1"}},
    ),
    ("POST", "/v1/resources", {"json": {"name": "", "capacity": 5}}),
    ("POST", "/v1/resources", {"json": {"name": "hall", "capacity": 5, "$where": 1}}),
    (
        "POST",
        "/v1/resources",
        {
            "json": {"name": "hall", "capacity": 5},
            "headers": bearer("scoped-2", scope="bookings:write"),
        },
    ),
    ("GET", "/v1/resources", {}),
    ("GET", "/v1/resources", {"params": {"limit": "1"}}),
    ("GET", "/v1/resources", {"params": {"limit": "1", "cursor": str(RESOURCE)}}),
    ("GET", "/v1/resources", {"params": {"limit": "0"}}),
    ("GET", "/v1/resources", {"params": {"limit": "many"}}),
    ("GET", "/v1/resources", {"params": {"limit": ""}}),
    ("GET", "/v1/resources", {"params": {"cursor": "not-an-id"}}),
    ("GET", "/v1/resources", {"anonymous": True}),
    ("GET", "/v1/resources", {"params": {"limit": "0"}, "anonymous": True}),
    ("GET", f"/v1/resources/{RESOURCE}", {}),
    ("GET", f"/v1/resources/{uuid4()}", {}),
    ("GET", "/v1/resources/not-an-id", {}),
    ("GET", "/v1/resources/not-an-id", {"anonymous": True}),
    ("GET", f"/v1/resources/{RESOURCE}", {"headers": bearer("scoped-3", scope="bookings:write")}),
    ("GET", f"/v1/bookings/{CONFIRMED}", {"principal": "alice"}),
    ("GET", f"/v1/bookings/{CONFIRMED}", {}),  # another principal's: 404
    ("GET", f"/v1/bookings/{uuid4()}", {}),
    ("GET", "/v1/bookings/12", {}),
    ("GET", f"/v1/bookings/{CONFIRMED}", {"anonymous": True}),
    ("POST", f"/v1/bookings/{CONFIRMED}/cancel", {"principal": "alice"}),
    ("POST", f"/v1/bookings/{REJECTED}/cancel", {"principal": "alice"}),  # 409
    ("POST", f"/v1/bookings/{uuid4()}/cancel", {}),
    ("POST", "/v1/bookings/12/cancel", {}),
    ("POST", f"/v1/bookings/{CONFIRMED}/cancel", {"content": b"x" * 70_000}),
    (
        "POST",
        f"/v1/bookings/{CONFIRMED}/cancel",
        {"headers": bearer("scoped-4", scope="bookings:read")},
    ),
    # One principal's requests: the fifth charged within the burst of four is a 429.
    *[("GET", "/v1/resources", {"principal": "busy"})] * 4,
    ("POST", "/v1/bookings", {"json": BOOKING, "principal": "busy"}),
    ("POST", "/v1/bookings", {"json": {**BOOKING, "quantity": 0}, "principal": "busy"}),
]


def sent(number: int, req: dict[str, Any]) -> dict[str, Any]:
    """The request's httpx arguments: its own principal's token unless anonymous."""
    rest = {k: v for k, v in req.items() if k not in ("anonymous", "principal")}
    token = {} if req.get("anonymous") else bearer(sub=req.get("principal", f"p{number}"))
    rest["headers"] = token | rest.get("headers", {})
    return rest


async def test_the_lane_answers_what_fastapi_answers(
    gateways: list[tuple[AsyncClient, Fakes, CountingLimiter]],
) -> None:
    """Every request, sent in turn to both gateways: the same answer, the same charges
    against the rate limit and the same commands published, after each request."""
    for number, (method, path, req) in enumerate(REQUESTS):
        seen = []
        for client, fakes, limiter in gateways:
            response = await client.request(method, path, **sent(number, req))
            seen.append((answer(response), limiter.charged, len(fakes.publisher.published)))

        assert seen[0] == seen[1], (method, path, req)


async def test_the_lane_answers_every_kind_of_request_it_was_built_for(
    gateways: list[tuple[AsyncClient, Fakes, CountingLimiter]],
) -> None:
    """The parity test means something only if the requests meet every answer."""
    client, _, _ = gateways[0]
    statuses = set()
    for number, (method, path, req) in enumerate(REQUESTS):
        statuses.add((await client.request(method, path, **sent(number, req))).status_code)

    assert statuses == {200, 202, 400, 401, 403, 404, 409, 413, 422, 429}


async def test_the_lane_takes_its_routes_past_fastapis_router(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routed: list[str] = []
    route = Router.__call__

    async def counting(self: Router, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            routed.append(f"{scope['method']} {scope['path']}")
        await route(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    async with (
        LifespanManager(build(lane=True)[0]) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://gateway") as http,
    ):
        valid = await http.post("/v1/bookings", json=BOOKING, headers=bearer("a"))
        refused = await http.post(
            "/v1/bookings", json={**BOOKING, "quantity": 0}, headers=bearer("b")
        )
        listed = await http.get("/v1/resources", headers=bearer("c"))
        one = await http.get(f"/v1/resources/{RESOURCE}", headers=bearer("d"))
        not_an_id = await http.get("/v1/resources/nope", headers=bearer("e"))
        deeper = await http.get(f"/v1/resources/{RESOURCE}/more", headers=bearer("f"))
        health = await http.get("/healthz")

    statuses = [r.status_code for r in (valid, refused, listed, one, not_an_id, deeper, health)]
    assert statuses == [202, 422, 200, 200, 422, 404, 200]
    # The refused request reaches FastAPI with its body intact: it answers the 422 itself.
    assert refused.json()["errors"][0]["loc"] == ["body", "quantity"]
    assert routed == [
        "POST /v1/bookings",
        "GET /v1/resources/nope",
        f"GET /v1/resources/{RESOURCE}/more",
        "GET /healthz",
    ]


async def test_the_apps_dependency_overrides_apply() -> None:
    app, _ = build(lane=True)
    other = Fakes()

    async def other_deps() -> Any:
        return other.deps()

    app.dependency_overrides[get_deps] = other_deps
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://gateway") as http,
    ):
        response = await http.get("/v1/resources", headers=bearer())

    assert response.json()["items"] == []  # the overriding deps know no resource


async def test_a_refused_request_is_charged_once_against_the_rate_limit(fakes: Fakes) -> None:
    resource = uuid4()
    fakes.views.add_resource(resource)
    app = create_app(
        settings(rate_limit_burst=2, rate_limit_per_second=0.001), overrides=fakes.deps()
    )
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://gateway") as http,
    ):
        invalid = await http.post(
            "/v1/bookings", json={"resource_id": str(resource), "quantity": 0}, headers=bearer()
        )
        valid = await http.post(
            "/v1/bookings", json={"resource_id": str(resource), "quantity": 1}, headers=bearer()
        )
        over = await http.post(
            "/v1/bookings", json={"resource_id": str(resource), "quantity": 1}, headers=bearer()
        )

    assert [invalid.status_code, valid.status_code, over.status_code] == [422, 202, 429]


class RefusedError(Exception):
    pass


async def raising(request: Request) -> Response:
    match request.query_params["what"]:
        case "http":
            raise HTTPException(418, "short and stout", headers={"x-teapot": "yes"})
        case "handled":
            raise RefusedError
        case _:
            raise KeyError("a bug")


async def on_refused(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"refused": True}, status_code=409)


async def test_a_handlers_exceptions_are_answered_by_the_apps_own_handlers() -> None:
    app = FastAPI()
    app.add_exception_handler(RefusedError, on_refused)
    app.add_middleware(FastLane, routes=[LaneRoute("GET", "/boom", raising)])
    transport = ASGITransport(app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://t") as http:
        http_error = await http.get("/boom?what=http")
        handled = await http.get("/boom?what=handled")
        bug = await http.get("/boom?what=bug")

    # FastAPI's own handler for HTTPException, as for any route.
    assert (http_error.status_code, http_error.json()) == (418, {"detail": "short and stout"})
    assert http_error.headers["x-teapot"] == "yes"
    assert (handled.status_code, handled.json()) == (409, {"refused": True})
    assert bug.status_code == 500  # ServerErrorMiddleware's, as for any route


async def test_the_openapi_document_is_the_one_fastapi_made_before_the_lane(
    client: AsyncClient,
) -> None:
    """tests/unit/gateway/openapi.json: the document as FastAPI made it for the routes on
    their own. Every operation and schema in it is still there, unchanged (new ones may be
    added; to change one on purpose, rewrite the file from /openapi.json)."""
    expected = json.loads(SNAPSHOT.read_text())
    spec = (await client.get("/openapi.json")).json()

    for path, operations in expected["paths"].items():
        assert spec["paths"].get(path) == operations, path
    for name, schema in expected["components"]["schemas"].items():
        assert spec["components"]["schemas"].get(name) == schema, name
    rest = {k: v for k, v in expected.items() if k not in ("paths", "components")}
    assert {k: spec.get(k) for k in rest} == rest
    assert spec["components"]["securitySchemes"] == expected["components"]["securitySchemes"]
