"""The HTTP side every service shares: the app around a runtime, and its operations routes.

:func:`service_app` is each service's FastAPI app: the runtime's lifespan, the problem+json
handlers and :func:`ops_routes`. The gateway adds its API routes and middleware on top;
booking and consumer need nothing more.

- ``/healthz``: the process is up (no dependency is touched).
- ``/readyz``: every dependency answers within the readiness timeout; a 503 problem naming
  what is down otherwise (except an outage the service answers well without, whose check
  reads false in a 200: :class:`shared.service.OutageTolerated`), and while the process
  drains before it stops (shared.runner).
- ``/metrics``: the runtime's registry, in OpenMetrics when asked for (the format that
  carries the e2e histogram's trace exemplars), else Prometheus text.
- ``GET``/``PUT <faults_path>``: the fault switch (:mod:`shared.faults`), for a bearer token
  with the ``resources:admin`` scope; 404 outside dev and test, where it cannot be turned on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from shared.auth import AuthSettings, InvalidTokenError, Principal, Scope, verify_token
from shared.faults import ADMIN_PATH, FaultSettings, FaultSwitch
from shared.problem import (
    AuthenticationError,
    InsufficientScopeError,
    install_problem_handlers,
    problem_response,
    problem_responses,
    retry_after_header,
)
from shared.service import ServiceRuntime

# auto_error=False: a missing token must become our 401 problem, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="JWT with sub, exp, aud=bookify, scope")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(auth: AuthSettings, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal of a valid bearer token, else :class:`AuthenticationError` (401)."""
    if credentials is None:
        raise AuthenticationError("a bearer token is required")
    try:
        return verify_token(auth, credentials.credentials)
    except InvalidTokenError:
        # The reason (expired, bad signature, ...) stays in our logs, not the response.
        raise AuthenticationError("the bearer token is invalid", error="invalid_token") from None


def require_scope(principal: Principal, scope: Scope) -> Principal:
    if scope.value not in principal.scopes:
        raise InsufficientScopeError(scope.value)
    return principal


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, bool]


# async: FastAPI runs a plain ``def`` dependency in its thread pool (a thread hop each time).
async def get_runtime(request: Request) -> ServiceRuntime[Any, Any, Any]:
    runtime: ServiceRuntime[Any, Any, Any] = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime[Any, Any, Any], Depends(get_runtime)]


async def operator(runtime: RuntimeDep, credentials: Credentials) -> Principal:
    """An operator: a valid token with the ``resources:admin`` scope."""
    return require_scope(authenticate(runtime.settings.auth, credentials), Scope.RESOURCES_ADMIN)


async def fault_switch(runtime: RuntimeDep, credentials: Credentials) -> FaultSwitch:
    if not runtime.faults.allowed:
        # As if the endpoint did not exist: production has no fault switch, and checks no
        # token for it (booking and the consumer get no JWT secret there).
        environment = runtime.faults.environment.value
        raise HTTPException(404, f"fault injection is disabled in environment={environment}")
    await operator(runtime, credentials)
    return runtime.faults


Switch = Annotated[FaultSwitch, Depends(fault_switch)]


def ops_routes(*, faults_path: str = ADMIN_PATH, body_limited: bool = False) -> APIRouter:
    """The routes above, for the app's runtime (``app.state.runtime``, set by service_app)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, summary="The process is up")
    async def healthz() -> Health:
        return Health()

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="Kafka and MongoDB answer",
        responses=problem_responses(503),
    )
    async def readyz(runtime: RuntimeDep) -> Response | Readiness:
        if runtime.draining:  # leaving: take no new traffic, serve what still comes
            return problem_response(503, "not ready: shutting down", instance="/readyz")
        report = await runtime.readiness_report()
        checks, causes = report.checks, report.causes
        if report.down:
            down = ", ".join(n for n in report.down if n not in causes)
            reasons = [f"{down} unreachable"] if down else []
            reasons += [f"{name} refuses this service: {cause}" for name, cause in causes.items()]
            retry = retry_after_header(runtime.settings.readiness_timeout_seconds)
            return problem_response(
                503,
                f"not ready: {'; '.join(reasons)}",
                instance="/readyz",
                headers={"Retry-After": retry},
                checks=checks,
                causes=causes,
            )
        return Readiness(checks=checks)

    @router.get(
        "/metrics",
        summary="Prometheus exposition (OpenMetrics when asked for)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics(request: Request, runtime: RuntimeDep) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(runtime.registry), media_type=content_type)

    @router.get(
        faults_path,
        summary="Current fault injection settings (dev/test only)",
        responses=problem_responses(401, 403, 404),
    )
    async def read_faults(switch: Switch) -> dict[str, object]:
        return switch.state()

    @router.put(
        faults_path,
        summary="Switch fault injection on or off (dev/test only)",
        # 413 only where the app limits request bodies (the gateway's middleware).
        responses=problem_responses(400, 401, 403, 404, *([413] if body_limited else []), 422),
    )
    async def update_faults(settings: FaultSettings, switch: Switch) -> dict[str, object]:
        switch.update(settings)
        return switch.state()

    return router


def service_app(
    runtime: ServiceRuntime[Any, Any, Any],
    *,
    title: str,
    description: str,
    faults_path: str = ADMIN_PATH,
    body_limited: bool = False,
    api: Sequence[APIRouter] = (),
    api_prefix: str = "",
) -> FastAPI:
    """A service's FastAPI app: the runtime runs for as long as the app's lifespan.

    ``api``: the service's own routers, under ``api_prefix``, busiest first. They are
    matched before the operations routes: FastAPI (0.165) tries the included routers in
    order, and every router a request is tried against and misses costs it. Matched after
    the operations routes, a gateway booking cost 13-19 % more of the app's CPU (the same
    requests, interleaved, in one process).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    app = FastAPI(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=lifespan,
        # Off: the gateway's spans come from OpenTelemetry's FastAPIInstrumentor and its RED
        # metrics from its own middleware (DESIGN §5); FastAPI's native telemetry would do
        # both again, on every request of every service.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    for router in api:
        app.include_router(router, prefix=api_prefix)
    app.include_router(ops_routes(faults_path=faults_path, body_limited=body_limited))
    return app
