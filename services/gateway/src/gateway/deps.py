"""FastAPI dependencies as ``Annotated`` aliases, all in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.bootstrap import GatewayRuntime
from gateway.errors import RateLimitedError
from gateway.ratelimit import RateLimiter
from gateway.service import GatewayDeps
from shared.auth import Principal, Scope
from shared.ops import Credentials, authenticate, require_scope


# Every dependency is ``async def``: FastAPI runs a plain ``def`` one in its thread pool, a
# thread hop per request for what is an attribute read (py-spy: ~8% of a saturated gateway).
# And each is one call deep: solving a chain of small dependencies was a third of the
# accept path's CPU (py-spy), so each reads what it needs from the app's state itself.
async def get_deps(request: Request) -> GatewayDeps:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime.deps


DepsDep = Annotated[GatewayDeps, Depends(get_deps)]


def authorized(scope: Scope) -> Callable[[Request, Credentials], Awaitable[Principal]]:
    """A dependency: the bearer token's principal, charged one request against its rate
    limit (shared by every gateway instance unless rate_limit_storage is memory://), which
    must hold ``scope``."""

    async def dependency(request: Request, credentials: Credentials) -> Principal:
        runtime: GatewayRuntime = request.app.state.runtime
        limiter: RateLimiter = request.app.state.limiter
        principal = authenticate(runtime.settings.auth, credentials)
        if (wait := await limiter.acquire(principal.sub)) > 0:
            raise RateLimitedError(wait)
        return require_scope(principal, scope)

    return dependency


Reader = Annotated[Principal, Depends(authorized(Scope.BOOKINGS_READ))]
Writer = Annotated[Principal, Depends(authorized(Scope.BOOKINGS_WRITE))]
Admin = Annotated[Principal, Depends(authorized(Scope.RESOURCES_ADMIN))]

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
