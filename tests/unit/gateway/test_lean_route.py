"""LeanRoute: valid requests solved in one pass, every other one answered by FastAPI itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from uuid import uuid4

import fastapi.routing
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from gateway.app import create_app
from gateway.lean_route import LeanLane, LeanRoute
from tests.unit.gateway.conftest import bearer, settings

from .fakes import Fakes


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str
    count: Annotated[int, Field(strict=True, ge=1)]


async def caller(request: Request) -> str:
    """A dependency on the request alone, as the gateway's are; records each call."""
    request.app.state.calls.append(request.url.path)
    who = request.headers.get("x-caller", "anonymous")
    if who == "nobody":
        raise HTTPException(403, "nobody may order")
    return who


async def order(
    shop: int,
    body: Order,
    who: Annotated[str, Depends(caller)],
    note: Annotated[str | None, Header(max_length=5)] = None,
    limit: int = 3,
) -> JSONResponse:
    content = {"shop": shop, "who": who, "note": note, "limit": limit, **body.model_dump()}
    return JSONResponse(content, status_code=201)


def build(route_class: type[APIRoute], *, lane: bool = False) -> tuple[FastAPI, list[str]]:
    """The same small API on either route class, and the list of its dependency's calls.

    ``/orders`` (the shop in the query) is a fixed path, which a :class:`LeanLane` takes.
    """
    router = APIRouter(route_class=route_class)
    router.add_api_route("/orders/{shop}", order, methods=["POST"], status_code=201)
    router.add_api_route("/orders", order, methods=["POST"], status_code=201)
    app = FastAPI()
    app.include_router(router)
    if lane:
        app.add_middleware(LeanLane, routes=app.router.routes)
    app.state.calls = []
    return app, app.state.calls


@pytest.fixture(params=[LeanRoute, APIRoute], ids=["lean", "fastapi"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AsyncClient, list[str]]]:
    app, calls = build(request.param)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        yield http, calls


REQUESTS = [
    {"json": {"item": "a", "count": 2}, "headers": {"x-caller": "ann", "note": "hi"}},
    {"json": {"item": "a", "count": 2}, "params": {"limit": "7"}},
    {"json": {"item": "a", "count": "2"}},  # strict: a string is not a count
    {"json": {"item": "a", "count": 2, "extra": 1}},
    {"json": {"item": "a", "count": 2}, "headers": {"note": "too long"}},
    {"json": {"item": "a", "count": 2}, "params": {"limit": "many"}},
    {"content": b"{not json", "headers": {"content-type": "application/json"}},
    {"content": b'{"item": "a", "count": 2}', "headers": {"content-type": "text/plain"}},
    {"content": b"", "headers": {"content-type": "application/json"}},
    {"json": {"item": "a", "count": 2}, "headers": {"x-caller": "nobody"}},  # the handler's 403
]


@pytest.mark.parametrize("shop", ["12", "twelve"])
@pytest.mark.parametrize("req", REQUESTS)
async def test_answers_what_fastapi_answers(shop: str, req: dict[str, object]) -> None:
    answers = []
    for route_class in (LeanRoute, APIRoute):
        app, calls = build(route_class)
        async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
            response = await http.post(f"/orders/{shop}", **req)  # type: ignore[arg-type]
        answers.append((response.status_code, response.json(), len(calls)))

    assert answers[0] == answers[1]


@pytest.mark.parametrize("shop", ["12", "twelve"])
@pytest.mark.parametrize("req", REQUESTS)
async def test_the_lane_answers_what_fastapi_answers(shop: str, req: dict[str, object]) -> None:
    answers = []
    query = {"shop": shop, **req.get("params", {})}  # type: ignore[dict-item]
    rest = {k: v for k, v in req.items() if k != "params"}
    for route_class, lane in ((LeanRoute, True), (LeanRoute, False), (APIRoute, False)):
        app, calls = build(route_class, lane=lane)
        async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
            response = await http.post("/orders", params=query, **rest)  # type: ignore[arg-type]
        answers.append((response.status_code, response.json(), len(calls)))

    assert answers[0] == answers[1] == answers[2]


async def test_the_lane_takes_fixed_paths_past_fastapis_router(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routed: list[str] = []
    route = Router.__call__

    async def counting(self: Router, scope: Scope, receive: Receive, send: Send) -> None:
        routed.append(scope["path"])
        await route(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    app, _ = build(LeanRoute, lane=True)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        valid = await http.post("/orders?shop=1", json={"item": "a", "count": 1})
        refused = await http.post("/orders?shop=1", json={"item": "a", "count": 0})
        templated = await http.post("/orders/1", json={"item": "a", "count": 1})
        other_method = await http.get("/orders?shop=1")

    statuses = [r.status_code for r in (valid, refused, templated, other_method)]
    assert statuses == [201, 422, 201, 405]
    # The refused request reaches FastAPI with its body intact: it answers the 422 itself.
    assert refused.json()["detail"][0]["loc"] == ["body", "count"]
    assert routed == ["/orders", "/orders/1", "/orders"]


async def test_a_valid_request_calls_each_dependency_once(
    api: tuple[AsyncClient, list[str]],
) -> None:
    http, calls = api

    response = await http.post("/orders/1", json={"item": "a", "count": 1})

    assert response.status_code == 201
    assert calls == ["/orders/1"]


async def test_only_a_request_it_refuses_goes_through_fastapis_dependency_solving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    solved: list[str] = []
    solve = vars(fastapi.routing)["solve_dependencies"]  # what FastAPI's handler calls

    async def counting(*, request: Request, **kwargs: Any) -> Any:
        solved.append(request.url.path)
        return await solve(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    app, calls = build(LeanRoute)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        valid = await http.post("/orders/1", json={"item": "a", "count": 1})
        invalid = await http.post("/orders/2", json={"item": "a", "count": 0})

    assert (valid.status_code, invalid.status_code) == (201, 422)
    assert solved == ["/orders/2"]
    assert calls == ["/orders/1", "/orders/2"]


@pytest.mark.parametrize("route_class", [LeanRoute, APIRoute], ids=["lean", "fastapi"])
async def test_the_apps_dependency_overrides_apply(route_class: type[APIRoute]) -> None:
    app, calls = build(route_class)

    async def someone_else() -> str:
        return "override"

    app.dependency_overrides[caller] = someone_else
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        response = await http.post("/orders/1", json={"item": "a", "count": 1})

    assert response.json()["who"] == "override"
    assert calls == []


async def with_cookie(session: Annotated[str, Cookie()]) -> JSONResponse:
    return JSONResponse({})


async def returns_a_model() -> Order:
    return Order(item="a", count=1)


def plain(request: Request) -> JSONResponse:
    return JSONResponse({})


def sync_caller(request: Request) -> str:
    return "sync"


async def with_a_sync_dependency(who: Annotated[str, Depends(sync_caller)]) -> JSONResponse:
    return JSONResponse(who)


async def with_a_list(tags: Annotated[list[str], Query()]) -> JSONResponse:
    return JSONResponse(tags)


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        (with_cookie, "cookie parameters"),
        (returns_a_model, "returns a model"),
        (with_a_list, "parameter 'tags'"),
        (plain, "plain def endpoint"),
        (with_a_sync_dependency, "dependency 'who' is not async"),
    ],
)
def test_routes_it_would_solve_differently_are_refused_when_declared(
    endpoint: Callable[..., Awaitable[object]], why: str
) -> None:
    router = APIRouter(route_class=LeanRoute)

    with pytest.raises(TypeError, match=why):
        router.add_api_route("/refused", endpoint)


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
