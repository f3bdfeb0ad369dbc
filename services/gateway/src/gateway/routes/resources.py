"""/v1/resources: create (through Kafka like every write), read one, list by cursor."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter

from gateway import use_cases
from gateway.deps import (
    IDEMPOTENCY_KEY,
    Admin,
    DepsDep,
    IdempotencyKey,
    Reader,
    admin,
    get_deps,
    reader,
)
from gateway.fast_lane import LaneRoute, json_body, param, path_param
from gateway.fault_injection import API_PREFIX
from gateway.schemas import (
    MAX_PAGE_SIZE,
    ResourceAccepted,
    ResourceCreate,
    ResourceOut,
    ResourcePage,
)
from shared.problem import problem_responses

router = APIRouter(prefix="/resources", tags=["resources"])

PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Cursor = Annotated[UUID | None, Query(description="next_cursor of the previous page")]


def model_response(model: BaseModel) -> JSONResponse:
    """200 with ``model`` as JSON. API endpoints return their response themselves (their
    ``response_model`` documents it), so the fast lane serves them as FastAPI does."""
    return JSONResponse(model.model_dump(mode="json"))


def accepted_response(result: use_cases.Accepted) -> JSONResponse:
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
    accepted = await use_cases.create_resource(deps, principal, body, idempotency_key)
    return accepted_response(accepted)


@router.get(
    "/{resource_id}",
    response_model=ResourceOut,
    summary="One resource with its current availability (eventually consistent)",
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def get_resource(resource_id: UUID, _: Reader, deps: DepsDep) -> JSONResponse:
    return model_response(await use_cases.get_resource(deps, resource_id))


@router.get(
    "",
    response_model=ResourcePage,
    summary="Resources ordered by id, one page at a time",
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def list_resources(
    _: Reader,
    deps: DepsDep,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> JSONResponse:
    return model_response(await use_cases.list_resources(deps, cursor=cursor, limit=limit))


# The same endpoints in the fast lane (gateway.fast_lane): validate as FastAPI would, then
# call the same dependencies and endpoint.
RESOURCE_CREATE = TypeAdapter(ResourceCreate)
RESOURCE_ID = TypeAdapter(UUID)
PAGE_SIZE: TypeAdapter[int] = TypeAdapter(PageSize)
CURSOR: TypeAdapter[UUID | None] = TypeAdapter(Cursor)


async def create_resource_fast(request: Request) -> JSONResponse:
    body = await json_body(request, RESOURCE_CREATE)
    key = param(IDEMPOTENCY_KEY, request.headers.get("idempotency-key"), None)
    return await create_resource(body, await admin(request), await get_deps(request), key)


async def get_resource_fast(request: Request) -> JSONResponse:
    resource_id = path_param(request, "resource_id", RESOURCE_ID)
    return await get_resource(resource_id, await reader(request), await get_deps(request))


async def list_resources_fast(request: Request) -> JSONResponse:
    query = request.query_params
    limit = param(PAGE_SIZE, query.get("limit"), 20)
    cursor = param(CURSOR, query.get("cursor"), None)
    return await list_resources(await reader(request), await get_deps(request), limit, cursor)


PATH = f"{API_PREFIX}{router.prefix}"
LANE = (
    LaneRoute("POST", PATH, create_resource_fast),
    LaneRoute("GET", PATH, list_resources_fast),
    LaneRoute("GET", PATH + "/{resource_id}", get_resource_fast),
)
