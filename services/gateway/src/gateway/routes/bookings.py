"""/v1/bookings: request (202 once Kafka acked), read status, list, cancel."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, TypeAdapter

from gateway import use_cases
from gateway.deps import (
    IDEMPOTENCY_KEY,
    DepsDep,
    IdempotencyKey,
    Reader,
    Writer,
    get_deps,
    reader,
    writer,
)
from gateway.fast_lane import LaneRoute, json_body, param, path_param
from gateway.fault_injection import API_PREFIX
from gateway.routes.resources import PageSize, accepted_response, model_response
from gateway.schemas import (
    BookingAccepted,
    BookingCreate,
    BookingOut,
    BookingPage,
    DecidedStatus,
    decode_list_cursor,
)
from shared.problem import problem_responses

router = APIRouter(prefix="/bookings", tags=["bookings"])


@router.post(
    "",
    status_code=202,
    response_model=BookingAccepted,
    summary="Request a booking; poll the Location for the outcome",
    responses=problem_responses(400, 401, 403, 413, 422, 429, 503),
)
async def request_booking(
    body: BookingCreate, principal: Writer, deps: DepsDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    accepted = await use_cases.request_booking(deps, principal, body, idempotency_key)
    return accepted_response(accepted)


def _list_cursor(cursor: str | None) -> str | None:
    if cursor is not None:
        decode_list_cursor(cursor)  # a ValueError is the caller's 422
    return cursor


ListCursor = Annotated[
    str | None,
    Query(max_length=40, description="next_cursor of the previous page"),
    AfterValidator(_list_cursor),
]
StatusFilter = Annotated[DecidedStatus | None, Query(description="Only bookings in this status.")]
ResourceFilter = Annotated[UUID | None, Query(description="Only bookings of this resource.")]


@router.get(
    "",
    response_model=BookingPage,
    summary="The caller's decided bookings, newest first, one page at a time",
    description="A booking is listed once it is decided (a pending one is read by its id), "
    "in the order the read model learned of it, and shows its current status.",
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def list_bookings(
    principal: Reader,
    deps: DepsDep,
    limit: PageSize = 20,
    cursor: ListCursor = None,
    status: StatusFilter = None,
    resource_id: ResourceFilter = None,
) -> JSONResponse:
    page = await use_cases.list_bookings(
        deps,
        principal,
        cursor=None if cursor is None else decode_list_cursor(cursor),
        limit=limit,
        status=status,
        resource_id=resource_id,
    )
    return model_response(page)


@router.get(
    "/{booking_id}",
    response_model=BookingOut,
    summary="A booking's status: pending, confirmed, rejected (with reason) or cancelled",
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def get_booking(booking_id: UUID, principal: Reader, deps: DepsDep) -> JSONResponse:
    return model_response(await use_cases.get_booking(deps, principal, booking_id))


@router.post(
    "/{booking_id}/cancel",
    status_code=202,
    response_model=BookingOut,
    summary="Cancel a booking; a confirmed booking's seats are returned",
    responses=problem_responses(401, 403, 404, 409, 413, 422, 429, 503),
)
async def cancel_booking(booking_id: UUID, principal: Writer, deps: DepsDep) -> JSONResponse:
    return accepted_response(await use_cases.cancel_booking(deps, principal, booking_id))


# The same endpoints in the fast lane (gateway.fast_lane): validate as FastAPI would, then
# call the same dependencies and endpoint.
BOOKING_CREATE = TypeAdapter(BookingCreate)
BOOKING_ID = TypeAdapter(UUID)


async def request_booking_fast(request: Request) -> JSONResponse:
    body = await json_body(request, BOOKING_CREATE)
    key = param(IDEMPOTENCY_KEY, request.headers.get("idempotency-key"), None)
    return await request_booking(body, await writer(request), await get_deps(request), key)


async def get_booking_fast(request: Request) -> JSONResponse:
    booking_id = path_param(request, "booking_id", BOOKING_ID)
    return await get_booking(booking_id, await reader(request), await get_deps(request))


async def cancel_booking_fast(request: Request) -> JSONResponse:
    booking_id = path_param(request, "booking_id", BOOKING_ID)
    return await cancel_booking(booking_id, await writer(request), await get_deps(request))


PATH = f"{API_PREFIX}{router.prefix}"
LANE = (
    LaneRoute("POST", PATH, request_booking_fast),
    LaneRoute("GET", PATH + "/{booking_id}", get_booking_fast),
    LaneRoute("POST", PATH + "/{booking_id}/cancel", cancel_booking_fast),
)
