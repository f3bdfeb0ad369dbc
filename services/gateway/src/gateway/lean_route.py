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
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin
from uuid import UUID

from fastapi import Request, Response, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation, request_body_to_args
from fastapi.routing import APIRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        framework = super().get_route_handler()
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

        async def handler(request: Request) -> Response:
            if getattr(request.app, "dependency_overrides", None):
                return await framework(request)  # FastAPI applies them; LeanRoute does not
            values: dict[str, Any] = {}
            for param in params:
                raw = getattr(request, param.source).get(param.key)
                if raw is None:
                    if param.required:
                        return await framework(request)
                    values[param.field.name] = param.field.default
                    continue
                value, errors = param.field.validate(raw, values, loc=param.loc)
                if errors:
                    return await framework(request)
                values[param.field.name] = value
            if body_fields:
                body = await request.body()  # kept on the request for FastAPI, if it answers
                if not body or request.headers.get("content-type", "").lower() not in JSON_TYPES:
                    return await framework(request)
                try:
                    received = json.loads(body)
                except (ValueError, RecursionError):  # FastAPI words these (400 or 422)
                    return await framework(request)
                solved, errors = await request_body_to_args(body_fields, received, embed)
                if errors:
                    return await framework(request)
                values.update(solved)
            for name, call in dependencies:
                values[name] = await call(request)
            response: Response = await endpoint(**values)
            return response

        return handler


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
