"""Pure ASGI middleware: request body limit and HTTP RED metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi.routing import RouteContext, iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.fast_lane import LaneRoute
from shared.problem import send_problem
from shared.telemetry import LATENCY_BUCKETS


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit.

    An HTTPException so FastAPI's body parsing re-raises it untouched (it turns any other
    error into a 400) and the problem handlers answer 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


BODY_METHODS = frozenset({"POST", "PUT"})


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, and by counting the
    streamed chunks (chunked uploads have no Content-Length, and it can lie).

    Only for the methods whose routes read a body (POST, PUT): a GET's body is never read,
    so those routes never answer 413 and their OpenAPI documents need not say they might.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # malformed: let the streamed count decide
                if declared > self.max_bytes:
                    await self._reject(scope, send)
                    return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_problem(
            send,
            413,
            f"request body exceeds {self.max_bytes} bytes",
            instance=scope.get("path", ""),
            headers=[(b"connection", b"close")],
        )


class HttpMetrics:
    """bookify_http_requests_total and bookify_http_request_duration_seconds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "bookify_http_requests",
            "HTTP requests answered by the gateway.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "bookify_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class MetricsMiddleware:
    """Labels by route *template* (``/v1/bookings/{booking_id}``), never the raw path,
    so ids cannot blow up label cardinality."""

    UNMATCHED = "unmatched"

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._contexts: list[RouteContext] | None = None
        self._templates: dict[int, str] = {}

    def _route_contexts(self) -> list[RouteContext]:
        # FastAPI includes routers lazily: scope["route"] is the route as declared in its
        # APIRouter (no /v1 prefix), so map it to the full template once routes are final.
        if self._contexts is None:
            self._contexts = list(iter_route_contexts(self.routes))
            self._templates = {
                id(c.original_route): c.path_format for c in self._contexts if c.path_format
            }
        return self._contexts

    def _template(self, scope: Scope) -> str:
        contexts = self._route_contexts()
        route = scope.get("route")
        if isinstance(route, LaneRoute):
            return route.path_format
        if route is not None and id(route) in self._templates:
            return self._templates[id(route)]
        # Answered before routing (e.g. a 413 by Content-Length): match it ourselves.
        for context in contexts:
            match, _ = context.matches(scope)
            if match is not Match.NONE and context.path_format:
                return str(context.path_format)
        return self.UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            route = self._template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - start)
