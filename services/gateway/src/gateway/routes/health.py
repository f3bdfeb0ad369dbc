"""Liveness, readiness and Prometheus metrics (no auth, outside /v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway import service
from gateway.deps import DepsDep, SettingsDep
from gateway.problem import problem_response, problem_responses, retry_after_header
from gateway.schemas import Health, Readiness

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
async def readyz(deps: DepsDep, settings: SettingsDep) -> Response | Readiness:
    checks = await service.readiness(deps, settings.readiness_timeout_seconds)
    if not all(checks.values()):
        down = ", ".join(name for name, ok in checks.items() if not ok)
        return problem_response(
            503,
            f"not ready: {down} unreachable",
            instance="/readyz",
            headers={"Retry-After": retry_after_header(settings.retry_after_seconds)},
            checks=checks,
        )
    return Readiness(checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus text exposition",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
