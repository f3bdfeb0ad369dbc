"""/v1/bookings: request (202 once Kafka acked), read status, cancel."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway import service
from gateway.deps import DepsDep, IdempotencyKey, Reader, Writer
from gateway.lean_route import LeanRoute
from gateway.routes.resources import accepted_response, model_response
from gateway.schemas import BookingAccepted, BookingCreate, BookingOut
from shared.problem import problem_responses

router = APIRouter(prefix="/bookings", tags=["bookings"], route_class=LeanRoute)


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
    return accepted_response(await service.request_booking(deps, principal, body, idempotency_key))


@router.get(
    "/{booking_id}",
    response_model=BookingOut,
    summary="A booking's status: pending, confirmed, rejected (with reason) or cancelled",
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def get_booking(booking_id: UUID, principal: Reader, deps: DepsDep) -> JSONResponse:
    return model_response(await service.get_booking(deps, principal, booking_id))


@router.post(
    "/{booking_id}/cancel",
    status_code=202,
    response_model=BookingOut,
    summary="Cancel a booking; a confirmed booking's seats are returned",
    responses=problem_responses(401, 403, 404, 409, 413, 422, 429, 503),
)
async def cancel_booking(booking_id: UUID, principal: Writer, deps: DepsDep) -> JSONResponse:
    return accepted_response(await service.cancel_booking(deps, principal, booking_id))
