"""The gateway's API routes answered past FastAPI's routing and dependency solving.

Why: for an accepted booking, FastAPI's general request path (its router, included routers,
exit stacks, and a dependency graph solved per request) cost more than half of the app's
CPU; see docs/PERFORMANCE.md#the-gateways-fast-lane.

:class:`FastLane` is pure ASGI middleware, added innermost. A request whose method and path
match one of its :class:`LaneRoute`\\ s goes to that route's handler, a plain
``async (Request) -> Response`` written next to the FastAPI endpoint it serves (see
gateway.routes): it validates the request with pydantic (:func:`json_body`, :func:`param`,
:func:`path_param`, given ``TypeAdapter``\\ s of the very types the endpoint declares), then
calls the same dependency functions and the same endpoint function. Only Starlette's and
pydantic's public API is used.

When a handler raises :class:`Declined` (a parameter or the body is invalid, or the body is
not plain JSON), and while the app has ``dependency_overrides`` (tests), the request goes on
down the usual stack, with what the handler read of its body handed out again, and FastAPI
answers it as it always did: which error, and whether the caller is asked who it is first.
Nothing has run by then: handlers call the dependencies (authentication, the rate limit)
only once the request is known to be valid. The exceptions a handler raises are answered by
the app's own exception handlers, through Starlette's ``ExceptionMiddleware``, as the
router's are.

The OpenAPI document is FastAPI's, from the routes as declared: the lane adds nothing to it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import TypeAdapter
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
_PENDING = "bookify.fast_lane.error"  # the handler's exception, for the app's own handlers


class Declined(Exception):  # noqa: N818  # not an error: the lane's "not mine"
    """The lane leaves this request to FastAPI, which answers it as it always did."""


@dataclass(frozen=True)
class LaneRoute:
    """``method`` on ``path_format`` served by ``handle``. The path is fixed, or has one
    parameter (``/v1/bookings/{booking_id}``: one segment, as Starlette matches it), which
    the handler reads from ``request.path_params``. ``path_format`` names the route in the
    HTTP metrics too."""

    method: str
    path_format: str
    handle: Callable[[Request], Awaitable[Response]]

    def __post_init__(self) -> None:
        if self.path_format.count("{") > 1:
            raise ValueError(f"a lane route has one path parameter at most: {self.path_format}")


@dataclass(frozen=True)
class _Template:
    """A lane route's path with its parameter: ``prefix{name}suffix``."""

    prefix: str
    name: str
    suffix: str
    route: LaneRoute

    @classmethod
    def of(cls, route: LaneRoute) -> _Template:
        prefix, rest = route.path_format.split("{")
        name, suffix = rest.split("}")
        return cls(prefix, name, suffix, route)

    def match(self, path: str) -> dict[str, str] | None:
        if not (path.startswith(self.prefix) and path.endswith(self.suffix)):
            return None
        value = path[len(self.prefix) : len(path) - len(self.suffix)]
        return {self.name: value} if value and "/" not in value else None


async def json_body(request: Request, model: TypeAdapter[T]) -> T:
    """The JSON body validated as FastAPI validates a body parameter, or :class:`Declined`."""
    body = await request.body()
    if not body or request.headers.get("content-type", "").lower() not in JSON_TYPES:
        raise Declined
    try:
        received = json.loads(body)
    except (ValueError, RecursionError):  # FastAPI words these (400 or 422)
        raise Declined from None
    return _validated(model, received)


def param(model: TypeAdapter[T], raw: str | None, default: T) -> T:
    """A query or header parameter with one value, validated as FastAPI validates it: the
    default when absent, else ``raw`` through the parameter's declared type, or
    :class:`Declined`."""
    return default if raw is None else _validated(model, raw)


def path_param(request: Request, name: str, model: TypeAdapter[T]) -> T:
    """The path parameter ``name`` through its declared type, or :class:`Declined`."""
    return _validated(model, request.path_params[name])


def _validated(model: TypeAdapter[T], value: Any) -> T:
    try:
        return model.validate_python(value, from_attributes=True)
    except ValueError:  # pydantic's ValidationError
        raise Declined from None


class FastLane:
    """Pure ASGI: a request for a :class:`LaneRoute` goes straight to its handler.

    Add it innermost (first): the middlewares added after it still see every request.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[LaneRoute]) -> None:
        self.app = app
        self.fixed: dict[tuple[str, str], LaneRoute] = {}
        self.templates: dict[str, list[_Template]] = {}
        for route in routes:
            if "{" in route.path_format:
                self.templates.setdefault(route.method, []).append(_Template.of(route))
            else:
                self.fixed[route.method, route.path_format] = route
        self._answer_error: ASGIApp | None = None

    def _match(self, scope: Scope) -> tuple[LaneRoute, dict[str, str]] | None:
        if scope["type"] != "http" or scope.get("root_path"):
            return None  # under a root path the router strips it: leave matching to it
        method, path = scope["method"], scope["path"]
        if (route := self.fixed.get((method, path))) is not None:
            return route, {}
        for template in self.templates.get(method, ()):
            if (params := template.match(path)) is not None:
                return template.route, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope)
        # FastAPI applies the app's dependency_overrides; the lane does not.
        if matched is None or scope["app"].dependency_overrides:
            await self.app(scope, receive, send)
            return
        route, scope["path_params"] = matched
        scope["route"] = route
        received: list[Message] = []  # what the handler read, for FastAPI if it declines

        async def recording() -> Message:
            message = await receive()
            received.append(message)
            return message

        try:
            response = await route.handle(Request(scope, recording, send))
        except Declined:
            await self.app(scope, _replay(received, receive), send)
            return
        except Exception as exc:
            scope[_PENDING] = exc
            await self._error_answerer(scope)(scope, receive, send)
            return
        await response(scope, receive, send)

    def _error_answerer(self, scope: Scope) -> ASGIApp:
        """The app's exception handlers as Starlette's ExceptionMiddleware applies them.

        Built on the first error, when they are all installed. As in Starlette's own stack,
        ``Exception`` and 500 belong to ServerErrorMiddleware, which wraps the lane too.
        """
        if self._answer_error is None:
            handlers = {
                key: handler
                for key, handler in scope["app"].exception_handlers.items()
                if key not in (500, Exception)
            }
            self._answer_error = ExceptionMiddleware(_raise_pending, handlers=handlers)
        return self._answer_error


async def _raise_pending(scope: Scope, receive: Receive, send: Send) -> None:
    raise scope.pop(_PENDING)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """``receive`` handing out again first what was ``received`` already."""
    pending = iter(received)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay
