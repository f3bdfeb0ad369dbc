"""/v1/resources: create (through Kafka like every write), read one, list by cursor."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import service
from gateway.deps import Admin, DepsDep, IdempotencyKey, Reader
from gateway.lean_route import LeanRoute
from gateway.schemas import (
    MAX_PAGE_SIZE,
    ResourceAccepted,
    ResourceCreate,
    ResourceOut,
    ResourcePage,
)
from shared.problem import problem_responses

router = APIRouter(prefix="/resources", tags=["resources"], route_class=LeanRoute)


def model_response(model: BaseModel) -> JSONResponse:
    """200 with ``model`` as JSON. API endpoints return their response themselves (their
    ``response_model`` documents it), so LeanRoute runs them without FastAPI's rendering."""
    return JSONResponse(model.model_dump(mode="json"))


def accepted_response(result: service.Accepted) -> JSONResponse:
    headers = {"Location": result.location}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(result.body, status_code=202, headers=headers)


@router.post(
    "",
    status_code=202,
    response_model=ResourceAccepted,
    summary="Create a resource (asynchronously, via Kafka)",
    responses=problem_responses(400, 401, 403, 413, 422, 429, 503),
)
async def create_resource(
    body: ResourceCreate, principal: Admin, deps: DepsDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return accepted_response(await service.create_resource(deps, principal, body, idempotency_key))


@router.get(
    "/{resource_id}",
    response_model=ResourceOut,
    summary="One resource with its current availability (eventually consistent)",
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def get_resource(resource_id: UUID, _: Reader, deps: DepsDep) -> JSONResponse:
    return model_response(await service.get_resource(deps, resource_id))


@router.get(
    "",
    response_model=ResourcePage,
    summary="Resources ordered by id, one page at a time",
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def list_resources(
    _: Reader,
    deps: DepsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = 20,
    cursor: Annotated[UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    return model_response(await service.list_resources(deps, cursor=cursor, limit=limit))
