"""The gateway's own errors as problems, on top of the handlers every service shares
(:mod:`shared.problem`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from gateway.errors import (
    GatewayError,
    IdempotencyKeyReusedError,
    NotCancellableError,
    NotFoundError,
    NothingNewError,
    RateLimitedError,
    UnknownResourceError,
)
from gateway.fault_injection import API_PREFIX
from gateway.hub import Scope, TooManyStreamsError
from gateway.ports import DependencyUnavailableError, UnsafeDocumentError
from shared.logging import get_logger
from shared.ops import authenticate, bearer
from shared.problem import (
    AuthenticationError,
    on_authentication_error,
    on_unexpected,
    on_validation_error,
    problem_response,
    retry_after_header,
)

log = get_logger(__name__)


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    path = request.url.path
    match exc:
        case RateLimitedError():
            retry = retry_after_header(exc.retry_after)
            return problem_response(
                429,
                exc.detail,
                instance=path,
                headers={"Retry-After": retry},
                retry_after=int(retry),
            )
        case NotFoundError():
            return problem_response(404, exc.detail, instance=path)
        case NotCancellableError():
            return problem_response(
                409, exc.detail, slug="booking-not-cancellable", title="Booking not cancellable",
                instance=path,
            )  # fmt: skip
        case UnknownResourceError():
            return problem_response(
                422, exc.detail, slug="unknown-resource", title="Unknown resource", instance=path
            )
        case IdempotencyKeyReusedError():
            return problem_response(
                422, exc.detail, slug="idempotency-key-reused",
                title="Idempotency-Key reused with a different request", instance=path,
            )  # fmt: skip
        case NothingNewError():
            return Response(status_code=204)  # an EventSource stops reconnecting on a 204
    return await on_unexpected(request, exc)


def make_too_many_streams_handler(retry_after: float) -> Any:
    async def _on_too_many_streams(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TooManyStreamsError)
        retry = retry_after_header(retry_after)
        per_principal = exc.scope is Scope.PRINCIPAL
        detail = (
            f"this principal already has {exc.limit} streams open here; close one"
            if per_principal
            else f"this gateway already holds {exc.limit} streams; retry (another may have room)"
        )
        return problem_response(
            429 if per_principal else 503,
            detail,
            slug="too-many-streams",
            title="Too many streams",
            instance=request.url.path,
            headers={"Retry-After": retry},
            retry_after=int(retry),
        )

    return _on_too_many_streams


def make_unavailable_handler(retry_after: float) -> Any:
    async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DependencyUnavailableError)
        log.warning("dependency unavailable", dependency=exc.dependency, error=exc.detail)
        retry = retry_after_header(retry_after)
        if exc.outcome_unknown:
            detail = (
                f"{exc.dependency} did not confirm the request in time, so it may still be "
                "accepted; retry with the same Idempotency-Key to get its one outcome"
            )
        else:
            detail = f"{exc.dependency} is unavailable; nothing was accepted, retry later"
        return problem_response(
            503,
            detail,
            instance=request.url.path,
            headers={"Retry-After": retry},
            retry_after=int(retry),
            outcome="unknown" if exc.outcome_unknown else "not_accepted",
        )

    return _on_unavailable


async def _on_unsafe_document(request: Request, exc: Exception) -> JSONResponse:
    # Second guard behind extra="forbid": operator-like keys never reach MongoDB.
    return problem_response(
        422, "keys starting with '$' or containing '.' are not allowed", instance=request.url.path
    )


async def _on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """Who before what: an anonymous request to /v1 is a 401 even when its body is broken.

    FastAPI reads and validates the body before it solves the route's dependencies, so
    without this a caller without a token would learn how its body is wrong (a 422).
    """
    if request.url.path.startswith(API_PREFIX + "/"):
        auth = request.app.state.runtime.settings.auth
        try:
            authenticate(auth, await bearer(request))
        except AuthenticationError as refused:
            return await on_authentication_error(request, refused)
    return await on_validation_error(request, exc)


def install_gateway_problem_handlers(
    app: FastAPI, *, retry_after_seconds: float, stream_retry_after_seconds: float
) -> None:
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(
        TooManyStreamsError, make_too_many_streams_handler(stream_retry_after_seconds)
    )
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(
        DependencyUnavailableError, make_unavailable_handler(retry_after_seconds)
    )
    app.add_exception_handler(UnsafeDocumentError, _on_unsafe_document)
