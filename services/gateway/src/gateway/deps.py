"""FastAPI dependencies as ``Annotated`` aliases, all in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.config import GatewaySettings
from gateway.errors import AuthenticationError, InsufficientScopeError, RateLimitedError
from gateway.ratelimit import TokenBucketLimiter
from gateway.service import GatewayDeps
from shared.auth import InvalidTokenError, Principal, Scope, verify_token

# auto_error=False: a missing token must become our 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="JWT with sub, exp, aud=bookify, scope")


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps | None = getattr(request.app.state, "deps", None)
    if deps is None:  # only between process start and the end of the lifespan startup
        raise RuntimeError("gateway dependencies are not initialised")
    return deps


def get_limiter(request: Request) -> TokenBucketLimiter:
    limiter: TokenBucketLimiter = request.app.state.limiter
    return limiter


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
DepsDep = Annotated[GatewayDeps, Depends(get_deps)]
LimiterDep = Annotated[TokenBucketLimiter, Depends(get_limiter)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_principal(
    settings: SettingsDep, limiter: LimiterDep, credentials: Credentials
) -> Principal:
    """Authenticate the bearer token, then charge the principal's rate-limit bucket."""
    if credentials is None:
        raise AuthenticationError("a bearer token is required")
    try:
        principal = verify_token(settings.auth, credentials.credentials)
    except InvalidTokenError:
        # The reason (expired, bad signature, ...) stays in our logs, not the response.
        raise AuthenticationError("the bearer token is invalid", error="invalid_token") from None
    if (wait := limiter.acquire(principal.sub)) > 0:
        raise RateLimitedError(wait)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_scope(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if scope.value not in principal.scopes:
            raise InsufficientScopeError(scope.value)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require_scope(Scope.BOOKINGS_READ))]
Writer = Annotated[Principal, Depends(require_scope(Scope.BOOKINGS_WRITE))]
Admin = Annotated[Principal, Depends(require_scope(Scope.RESOURCES_ADMIN))]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen key: the same key and body return the same 202.",
    ),
]
