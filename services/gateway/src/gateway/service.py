"""The gateway's use cases: parsed request in, command published, outcome out.

Routes stay thin (parse -> call one function here -> map the outcome); this module
talks only to the Protocols in ports.py, so unit tests drive it with fakes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from gateway.errors import (
    IdempotencyKeyReusedError,
    NotCancellableError,
    NotFoundError,
    UnknownResourceError,
)
from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
    AcceptedStore,
    CommandPublisher,
    DependencyUnavailableError,
    IdempotencyRecord,
    IdempotencyState,
    IdempotencyStore,
    ResourceView,
    ViewReader,
)
from gateway.schemas import (
    BookingAccepted,
    BookingCreate,
    BookingOut,
    ResourceAccepted,
    ResourceCreate,
    ResourceOut,
    ResourcePage,
)
from shared.auth import Principal
from shared.events import CancelBooking, Command, CreateResource, RequestBooking, utcnow
from shared.logging import get_logger
from shared.service import ReadinessCheck
from shared.telemetry import annotate_span

log = get_logger(__name__)

TERMINAL_FOR_CANCEL = frozenset({"rejected", "cancelled"})


@dataclass
class GatewayDeps:
    """Everything the use cases touch. ``create_app(deps=...)`` injects fakes in unit tests."""

    publisher: CommandPublisher
    views: ViewReader
    accepted: AcceptedStore
    idempotency: IdempotencyStore
    readiness: dict[str, ReadinessCheck]
    clock: Callable[[], datetime] = utcnow
    idempotency_wait_seconds: float = 2.0
    idempotency_poll_seconds: float = 0.05


@dataclass(frozen=True)
class Accepted:
    """A 202: where to poll and the exact body (replayed verbatim for a repeated key)."""

    location: str
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class _Ids:
    entity_id: UUID
    command_id: UUID
    accepted_at: datetime


@dataclass(frozen=True)
class _Plan:
    command: Command
    record: AcceptedRecord
    location: str
    body: dict[str, Any]


def request_hash(operation: str, payload: dict[str, Any]) -> str:
    """Hash of the *parsed* body, so whitespace or key order do not make it "different"."""
    canonical = json.dumps([operation, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_id(principal: str, operation: str, key: str) -> str:
    # The client's key is hashed, never stored as-is or used as a document key.
    return hashlib.sha256(f"{principal}\x00{operation}\x00{key}".encode()).hexdigest()


async def _accept(
    deps: GatewayDeps,
    principal: Principal,
    *,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    plan: Callable[[_Ids], _Plan],
) -> Accepted:
    """Publish once per Idempotency-Key, record it, and answer the same 202 every time.

    The key's reservation (with the ids to use) is written *before* publishing: a retry
    after a timeout whose command did land reuses the same booking and command ids, and
    the booking service, idempotent on those ids, decides it once.
    """
    ids = _Ids(uuid4(), uuid4(), deps.clock())
    key_id: str | None = None
    if idempotency_key is not None:
        key_id = idempotency_key_id(principal.sub, operation, idempotency_key)
        digest = request_hash(operation, payload)
        existing = await deps.idempotency.reserve(
            IdempotencyRecord(
                key_id=key_id,
                principal=principal.sub,
                operation=operation,
                request_hash=digest,
                entity_id=ids.entity_id,
                command_id=ids.command_id,
                accepted_at=ids.accepted_at,
                updated_at=ids.accepted_at,
            )
        )
        if existing is not None:
            if existing.request_hash != digest:
                raise IdempotencyKeyReusedError(
                    "this Idempotency-Key was already used with a different request body"
                )
            existing = await _wait_for_original(deps, existing)
            if existing.state is IdempotencyState.COMPLETED and existing.response is not None:
                return Accepted(existing.location or "", existing.response, replayed=True)
            # The original failed or is stuck: take it over with *its* ids. Publishing the
            # same command twice is harmless; downstream dedupes by command/booking id.
            ids = _Ids(existing.entity_id, existing.command_id, existing.accepted_at)

    p = plan(ids)
    annotate_span(
        command_id=p.command.command_id,
        booking_id=getattr(p.command, "booking_id", None),
        resource_id=getattr(p.command, "resource_id", None),
    )
    try:
        await deps.publisher.publish(p.command)
    except DependencyUnavailableError:
        if key_id is not None:
            await _best_effort_mark_failed(deps, key_id)
        raise
    # After the ack, before the 202: a GET on the Location must never 404.
    await deps.accepted.record(p.record)
    if key_id is not None:
        await deps.idempotency.complete(key_id, location=p.location, response=p.body)
    return Accepted(p.location, p.body)


async def _wait_for_original(deps: GatewayDeps, record: IdempotencyRecord) -> IdempotencyRecord:
    """A concurrent duplicate waits briefly for the original's response."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deps.idempotency_wait_seconds
    while record.state is IdempotencyState.PENDING and loop.time() < deadline:
        await asyncio.sleep(deps.idempotency_poll_seconds)
        latest = await deps.idempotency.get(record.key_id)
        if latest is None:  # cannot happen with a unique _id, unless someone deleted it
            return replace(record, state=IdempotencyState.FAILED)
        record = latest
    return record


async def _best_effort_mark_failed(deps: GatewayDeps, key_id: str) -> None:
    try:
        await deps.idempotency.mark_failed(key_id)
    except DependencyUnavailableError:
        # Still "pending": a retry just waits idempotency_wait_seconds before taking over.
        log.warning("could not mark idempotency reservation failed", key_id=key_id)


# ------------------------------------------------------------------ resources


async def create_resource(
    deps: GatewayDeps, principal: Principal, body: ResourceCreate, idempotency_key: str | None
) -> Accepted:
    def plan(ids: _Ids) -> _Plan:
        command = CreateResource(
            command_id=ids.command_id,
            principal=principal.sub,
            accepted_at=ids.accepted_at,
            resource_id=ids.entity_id,
            name=body.name,
            capacity=body.capacity,
        )
        record = AcceptedRecord(
            id=ids.entity_id,
            kind=AcceptedKind.RESOURCE,
            principal=principal.sub,
            resource_id=ids.entity_id,
            command_id=ids.command_id,
            accepted_at=ids.accepted_at,
            name=body.name,
            capacity=body.capacity,
        )
        out = ResourceAccepted(
            id=ids.entity_id, name=body.name, capacity=body.capacity, accepted_at=ids.accepted_at
        )
        return _Plan(command, record, f"/v1/resources/{ids.entity_id}", out.model_dump(mode="json"))

    return await _accept(
        deps,
        principal,
        operation="create_resource",
        payload=body.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        plan=plan,
    )


def _resource_out(view: ResourceView) -> ResourceOut:
    return ResourceOut(
        id=view.id,
        name=view.name,
        capacity=view.capacity,
        available=view.available,
        updated_at=view.updated_at,
    )


async def get_resource(deps: GatewayDeps, resource_id: UUID) -> ResourceOut:
    view = await deps.views.get_resource(resource_id)
    if view is not None:
        return _resource_out(view)
    # Accepted but not yet projected: nothing is booked yet, so available == capacity.
    rec = await deps.accepted.get(resource_id, AcceptedKind.RESOURCE)
    if rec is None or rec.name is None or rec.capacity is None:
        raise NotFoundError(f"resource {resource_id} not found")
    return ResourceOut(
        id=rec.id,
        name=rec.name,
        capacity=rec.capacity,
        available=rec.capacity,
        updated_at=None,
    )


async def list_resources(deps: GatewayDeps, *, cursor: UUID | None, limit: int) -> ResourcePage:
    views = await deps.views.list_resources(after=cursor, limit=limit + 1)
    page = views[:limit]
    items = [_resource_out(v) for v in page]
    return ResourcePage(items=items, next_cursor=page[-1].id if len(views) > limit else None)


# ------------------------------------------------------------------ bookings


async def _resource_exists(deps: GatewayDeps, resource_id: UUID) -> bool:
    if await deps.views.get_resource(resource_id) is not None:
        return True
    return await deps.accepted.get(resource_id, AcceptedKind.RESOURCE) is not None


async def request_booking(
    deps: GatewayDeps, principal: Principal, body: BookingCreate, idempotency_key: str | None
) -> Accepted:
    if not await _resource_exists(deps, body.resource_id):
        raise UnknownResourceError(f"resource {body.resource_id} does not exist")

    def plan(ids: _Ids) -> _Plan:
        command = RequestBooking(
            command_id=ids.command_id,
            principal=principal.sub,
            accepted_at=ids.accepted_at,
            booking_id=ids.entity_id,
            resource_id=body.resource_id,
            quantity=body.quantity,
        )
        record = AcceptedRecord(
            id=ids.entity_id,
            kind=AcceptedKind.BOOKING,
            principal=principal.sub,
            resource_id=body.resource_id,
            command_id=ids.command_id,
            accepted_at=ids.accepted_at,
            quantity=body.quantity,
        )
        out = BookingAccepted(
            id=ids.entity_id,
            resource_id=body.resource_id,
            quantity=body.quantity,
            accepted_at=ids.accepted_at,
        )
        return _Plan(command, record, f"/v1/bookings/{ids.entity_id}", out.model_dump(mode="json"))

    return await _accept(
        deps,
        principal,
        operation="request_booking",
        payload=body.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        plan=plan,
    )


async def get_booking(deps: GatewayDeps, principal: Principal, booking_id: UUID) -> BookingOut:
    not_found = NotFoundError(f"booking {booking_id} not found")
    view = await deps.views.get_booking(booking_id)
    if view is not None:
        # Someone else's booking is indistinguishable from a missing one.
        if view.principal != principal.sub:
            raise not_found
        return BookingOut(
            id=view.id,
            resource_id=view.resource_id,
            quantity=view.quantity,
            status=view.status,
            reason=view.reason,
            accepted_at=view.accepted_at,
            updated_at=view.updated_at,
        )
    rec = await deps.accepted.get(booking_id, AcceptedKind.BOOKING)
    if rec is None or rec.principal != principal.sub:
        raise not_found
    return BookingOut(
        id=rec.id,
        resource_id=rec.resource_id,
        quantity=rec.quantity or 0,
        status="pending",
        accepted_at=rec.accepted_at,
        updated_at=rec.accepted_at,
    )


async def cancel_booking(deps: GatewayDeps, principal: Principal, booking_id: UUID) -> Accepted:
    current = await get_booking(deps, principal, booking_id)  # 404 for missing / not owner
    if current.status in TERMINAL_FOR_CANCEL:
        raise NotCancellableError(f"booking {booking_id} is already {current.status}")
    # Cancelling twice is harmless: the booking service decides one cancel per booking.
    await deps.publisher.publish(
        CancelBooking(
            command_id=uuid4(),
            principal=principal.sub,
            accepted_at=deps.clock(),
            booking_id=booking_id,
            resource_id=current.resource_id,
        )
    )
    return Accepted(f"/v1/bookings/{booking_id}", current.model_dump(mode="json"))
