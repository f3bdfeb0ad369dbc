"""FastAPI dependencies as ``Annotated`` aliases, all in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.bootstrap import GatewayRuntime
from gateway.config import GatewaySettings
from gateway.errors import RateLimitedError
from gateway.ratelimit import RateLimiter
from gateway.service import GatewayDeps
from shared.auth import Principal, Scope
from shared.ops import Credentials, authenticate, require_scope


# Every dependency is ``async def``: FastAPI runs a plain ``def`` one in its thread pool, a
# thread hop per request for what is an attribute read (py-spy: ~8% of a saturated gateway).
async def get_runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> GatewaySettings:
    return (await get_runtime(request)).settings


async def get_deps(request: Request) -> GatewayDeps:
    return (await get_runtime(request)).deps


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
DepsDep = Annotated[GatewayDeps, Depends(get_deps)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


async def current_principal(
    settings: SettingsDep, limiter: LimiterDep, credentials: Credentials
) -> Principal:
    """Authenticate the bearer token, then charge the principal's rate limit (shared by every
    gateway instance unless rate_limit_storage is memory://)."""
    principal = authenticate(settings.auth, credentials)
    if (wait := await limiter.acquire(principal.sub)) > 0:
        raise RateLimitedError(wait)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def scoped(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the current principal, which must hold ``scope``."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        return require_scope(principal, scope)

    return dependency


Reader = Annotated[Principal, Depends(scoped(Scope.BOOKINGS_READ))]
Writer = Annotated[Principal, Depends(scoped(Scope.BOOKINGS_WRITE))]
Admin = Annotated[Principal, Depends(scoped(Scope.RESOURCES_ADMIN))]

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
