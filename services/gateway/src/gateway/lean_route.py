"""A FastAPI route that solves its parameters in one pass, and leaves every error to FastAPI.

FastAPI's request handler is general: a graph of dependencies, each with a cache key,
security scopes, an exit stack and telemetry context. For the gateway's API routes, whose
dependencies are each one call on the request, solving that graph was a fifth of a
saturated gateway's CPU (py-spy, ``bookify bench gateway``), more than the Kafka publish.

:class:`LeanRoute` keeps the route exactly as declared, so its OpenAPI document is
FastAPI's. Per request it validates the parameters with the route's own FastAPI fields:
the JSON body through ``request_body_to_args``, and each path, query or header parameter
(a scalar, read as ``request_params_to_args`` reads one) through its field's validator.
Then it calls the dependencies and the endpoint. Whenever a parameter is invalid or the
body is not plain JSON, it hands the request to FastAPI's own handler, which answers it
as it always did (which error, and whether the caller is asked who it is first). Nothing
has run by then: the dependencies (authentication, the rate limit) are called only once
the request is known to be valid.

While the app has ``dependency_overrides`` (tests), every request goes to FastAPI's handler,
which applies them. A route it could not solve the same way (cookies, a list parameter,
nested or plain ``def`` dependencies, an endpoint that returns a model for FastAPI to
render...) is refused when declared.

:class:`LeanLane` goes one step further for the routes with a fixed path (``POST
/v1/bookings``): it calls their lean handler straight from the middleware stack, past
Starlette's and FastAPI's routing, and sends anything the handler declines down that
routing as before.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import UnionType
from typing import Any, Union, get_args, get_origin
from uuid import UUID

from fastapi import Request, Response, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation, request_body_to_args
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
LeanHandler = Callable[[Request], Coroutine[Any, Any, Response | None]]
# An app's exception handler, as Starlette calls it for an HTTP request: async, or plain
# (run in the thread pool).
ExceptionAnswer = Callable[[Request, Exception], Any]
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        framework = super().get_route_handler()
        lean = self.lean

        async def handler(request: Request) -> Response:
            response = await lean(request)
            return await framework(request) if response is None else response

        return handler

    @cached_property
    def lean(self) -> LeanHandler:
        """The route's one-pass handler: its response, or None where FastAPI must answer
        (the request is invalid, or the app has ``dependency_overrides``)."""
        dependant = self.dependant
        endpoint = dependant.call
        assert endpoint is not None
        _check_solvable(self.path, dependant, endpoint)
        dependencies: list[tuple[str, Callable[[Request], Awaitable[Any]]]] = []
        for dependency in dependant.dependencies:
            assert dependency.name is not None
            assert dependency.call is not None
            dependencies.append((dependency.name, dependency.call))
        params = [
            _param(self.path, field, source)
            for fields, source in (
                (dependant.path_params, "path_params"),
                (dependant.query_params, "query_params"),
                (dependant.header_params, "headers"),
            )
            for field in fields
        ]
        body_fields = dependant.body_params
        embed = self._embed_body_fields

        async def lean(request: Request) -> Response | None:
            if getattr(request.app, "dependency_overrides", None):
                return None  # FastAPI applies them; LeanRoute does not
            values: dict[str, Any] = {}
            for param in params:
                raw = getattr(request, param.source).get(param.key)
                if raw is None:
                    if param.required:
                        return None
                    values[param.field.name] = param.field.default
                    continue
                value, errors = param.field.validate(raw, values, loc=param.loc)
                if errors:
                    return None
                values[param.field.name] = value
            if body_fields:
                body = await request.body()  # kept on the request for FastAPI, if it answers
                if not body or request.headers.get("content-type", "").lower() not in JSON_TYPES:
                    return None
                try:
                    received = json.loads(body)
                except (ValueError, RecursionError):  # FastAPI words these (400 or 422)
                    return None
                solved, errors = await request_body_to_args(body_fields, received, embed)
                if errors:
                    return None
                values.update(solved)
            for name, call in dependencies:
                values[name] = await call(request)
            response: Response = await endpoint(**values)
            return response

        return lean


class LeanLane:
    """Pure ASGI: a request for a LeanRoute with a fixed path goes straight to its handler.

    FastAPI reaches a route through Starlette's exception middleware, an exit stack, its
    router and each included router it tries, then the route's own exception wrapper. For
    a gateway booking that was a quarter of the app's CPU: the same POSTs, interleaved in
    one process with fakes for every port, cost 24-27 % less with the lane (147 against
    200 and 153 against 201 microseconds).

    The lane matches the method and path exactly, sets what routing sets for the
    middlewares outside it (``scope["route"]`` spares the metrics a match of their own),
    and answers the route's exceptions with the app's own handlers, as Starlette's wrapper
    does. Whatever the lean handler declines, and every other request, goes down the usual
    stack, so FastAPI answers it as it always did.

    Add it innermost (first): the middlewares added after it still see every request.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        self._lanes: dict[tuple[str, str], LeanRoute] | None = None
        self._handlers: dict[Any, ExceptionAnswer] = {}
        self._status_handlers: dict[int, ExceptionAnswer] = {}

    def _lane(self, scope: Scope) -> LeanRoute | None:
        if scope["type"] != "http" or scope.get("root_path"):
            return None  # under a root path, the router strips it: leave matching to it
        if self._lanes is None:
            # Built on the first request: FastAPI includes routers lazily.
            self._lanes = {
                (method, context.path_format): context.original_route
                for context in iter_route_contexts(self.routes)
                if isinstance(context.original_route, LeanRoute)
                and context.path_format
                and "{" not in context.path_format
                for method in (context.original_route.methods or set()) - {"HEAD"}
            }
            # As Starlette's ExceptionMiddleware takes them: Exception (and 500) belong to
            # ServerErrorMiddleware, which wraps the lane as it wraps the router.
            for key, handler in scope["app"].exception_handlers.items():
                if isinstance(key, int):
                    self._status_handlers[key] = handler
                elif key is not Exception:
                    self._handlers[key] = handler
        return self._lanes.get((scope["method"], scope["path"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._lane(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive, send)
        try:
            response = await route.lean(request)
            body = await request.body() if response is None else b""
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                answer = await handler(request, exc)
            else:
                answer = await run_in_threadpool(handler, request, exc)
            if answer is not None:
                await answer(scope, receive, send)
            return
        if response is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> ExceptionAnswer | None:
        if isinstance(exc, HTTPException) and exc.status_code in self._status_handlers:
            return self._status_handlers[exc.status_code]
        for cls in type(exc).__mro__:  # the most specific class with a handler, as Starlette
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read handed out again first."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


SCALARS = (str, int, UUID)


@dataclass(frozen=True)
class _Param:
    """A path, query or header parameter with one scalar value, and where to read it."""

    field: ModelField
    source: str  # the Request attribute: path_params, query_params or headers
    key: str
    loc: tuple[str, str]
    required: bool


def _param(path: str, field: ModelField, source: str) -> _Param:
    """How FastAPI reads ``field`` (``request_params_to_args``), for the one shape our routes
    use: a scalar, one name, no default to validate. Anything else is refused."""
    info = field.field_info
    kinds = get_args(info.annotation) if get_origin(info.annotation) in (Union, UnionType) else ()
    scalar = info.annotation in SCALARS or (
        len(kinds) == 2 and type(None) in kinds and any(k in SCALARS for k in kinds)
    )
    one_name = info.validation_alias in (None, field.alias)
    if not (isinstance(info, params.Param) and scalar and one_name and not info.validate_default):
        raise TypeError(f"LeanRoute cannot solve {path}: parameter {field.name!r}")
    key = field.alias
    if isinstance(info, params.Header) and info.convert_underscores and key == field.name:
        key = key.replace("_", "-")
    return _Param(field, source, key, (info.in_.value, key), info.is_required())


def _is_async(call: Callable[..., Any] | None) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (an ``HTTPBearer``)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def _check_solvable(path: str, dependant: Dependant, endpoint: Callable[..., Any]) -> None:
    """Refuse a route whose parameters :class:`LeanRoute` would solve differently."""
    returns = get_typed_return_annotation(endpoint)
    unsupported = [
        what
        for what, present in (
            ("cookie parameters", dependant.cookie_params),
            ("a Request parameter", dependant.request_param_name),
            ("a Response parameter", dependant.response_param_name),
            ("background tasks", dependant.background_tasks_param_name),
            ("security scopes", dependant.security_scopes_param_name),
            ("a WebSocket", dependant.websocket_param_name),
            ("an HTTPConnection", dependant.http_connection_param_name),
        )
        if present
    ]
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        unsupported.append("an endpoint that returns a model (FastAPI renders those)")
    if not inspect.iscoroutinefunction(endpoint):
        unsupported.append("a plain def endpoint (FastAPI runs those in its thread pool)")
    for dependency in dependant.dependencies:
        if not _is_async(dependency.call):
            unsupported.append(f"dependency {dependency.name!r} is not async")
        only_the_request = dependency.request_param_name is not None and not any(
            (
                dependency.path_params,
                dependency.query_params,
                dependency.header_params,
                dependency.cookie_params,
                dependency.body_params,
                dependency.dependencies,
            )
        )
        if not only_the_request:
            unsupported.append(f"dependency {dependency.name!r} takes more than the request")
    if unsupported:
        raise TypeError(f"LeanRoute cannot solve {path}: {', '.join(unsupported)}")
