"""RFC 9457 ``application/problem+json``: the one error format of every Bookify HTTP answer.

Every service's app installs these handlers (:func:`install_problem_handlers`); the gateway
adds the mapping of its domain errors on top. Each handler answers with ``type``, ``title``,
``status`` and ``detail``; validation problems add an ``errors`` list naming the offending
fields. Nothing here ever puts a stack trace or an exception's repr into a response.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from shared.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://bookify.dev/problems/"

log = get_logger(__name__)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the error is, e.g. ['body', 'quantity'].")
    field: str = Field(description="The dotted field name without its location.")
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(examples=[f"{PROBLEM_BASE}validation-error"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="For validation problems: the offending fields."
    )
    retry_after: int | None = Field(
        default=None, description="Seconds to wait before retrying (429, 503)."
    )


TITLES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Insufficient scope"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service temporarily unavailable"),
}


class AuthenticationError(Exception):
    """Missing or invalid bearer token (401)."""

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error  # RFC 6750 error code for WWW-Authenticate, when there was a token


class InsufficientScopeError(Exception):
    """A valid token without the scope the operation needs (403)."""

    def __init__(self, scope: str) -> None:
        self.detail = f"this operation needs the {scope!r} scope"
        super().__init__(self.detail)
        self.scope = scope


def problem_body(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    default_slug, default_title = TITLES.get(status, ("http-error", "HTTP error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if v is not None})
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = problem_body(status, detail, slug=slug, title=title, instance=instance, **extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def send_problem(
    send: Send,
    status: int,
    detail: str,
    *,
    instance: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem answered straight from pure ASGI middleware (before any route runs)."""
    payload = json.dumps(problem_body(status, detail, instance=instance)).encode()
    start_headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": payload})


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting each status as a Problem.

    FastAPI files a response ``model`` under application/json; ``use_problem_media_type``
    moves error schemas to application/problem+json, which is what is really sent.
    """
    return {
        status: {"model": Problem, "description": TITLES.get(status, ("", "Error"))[1]}
        for status in statuses
    }


def use_problem_media_type(app: FastAPI) -> None:
    """Make the OpenAPI document say application/problem+json for every 4xx/5xx."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[:1] in ("4", "5") and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        field_path = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
        out.append(
            {
                "loc": loc,
                "field": ".".join(str(p) for p in field_path),
                # Never echo "input"/"ctx": they may carry the whole (large, hostile) body.
                "message": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "value_error")),
            }
        )
    return out


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        detail = "the request body is not valid JSON"  # loc holds a byte offset, not a field
    else:
        fields = ", ".join(sorted({e["field"] or str(e["loc"][0]) for e in errors if e["loc"]}))
        detail = f"invalid request: {fields}" if fields else "invalid request"
    return problem_response(
        422,
        detail,
        instance=request.url.path,
        errors=errors,
    )


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    fallback = TITLES.get(exc.status_code, ("", "HTTP error"))[1]
    detail = exc.detail if isinstance(exc.detail, str) else fallback
    return problem_response(
        exc.status_code, detail, instance=request.url.path, headers=dict(exc.headers or {})
    )


async def on_authentication_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthenticationError)
    challenge = "Bearer" if exc.error is None else f'Bearer error="{exc.error}"'
    return problem_response(
        401, exc.detail, instance=request.url.path, headers={"WWW-Authenticate": challenge}
    )


async def _on_insufficient_scope(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InsufficientScopeError)
    challenge = f'Bearer error="insufficient_scope", scope="{exc.scope}"'
    return problem_response(
        403, exc.detail, instance=request.url.path, headers={"WWW-Authenticate": challenge}
    )


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return problem_response(500, "an unexpected error occurred", instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """The handlers every service shares; then the OpenAPI document says problem+json."""
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(AuthenticationError, on_authentication_error)
    app.add_exception_handler(InsufficientScopeError, _on_insufficient_scope)
    # Starlette's ServerErrorMiddleware calls this for anything unhandled (and then
    # re-raises so the server logs it); the client only ever sees a generic problem.
    app.add_exception_handler(Exception, on_unexpected)
    use_problem_media_type(app)
