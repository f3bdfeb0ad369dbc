"""The gateway's use cases: parsed request in, command published, outcome out.

Routes stay thin (parse -> call one function here -> map the outcome); this module
talks only to the Protocols in ports.py, so unit tests drive it with fakes. The accept
path the writes share (idempotency, publish, accepted record) is gateway.accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from gateway.accept import Accepted, Ids, Plan, accept
from gateway.errors import NotCancellableError, NotFoundError, UnknownResourceError
from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
)
from gateway.schemas import (
    BookingAccepted,
    BookingCreate,
    BookingOut,
    BookingPage,
    DecidedStatus,
    ResourceAccepted,
    ResourceCreate,
    ResourceOut,
    ResourcePage,
    encode_list_cursor,
)
from shared.auth import Principal
from shared.events import CancelBooking, CreateResource, RequestBooking
from shared.readmodel import BookingView, ResourceView

if TYPE_CHECKING:
    from gateway.bootstrap import GatewayDeps

__all__ = ["Accepted"]  # what the routes turn into a 202

TERMINAL_FOR_CANCEL = frozenset({"rejected", "cancelled"})
LIST_READS_MAX = 100  # list entries one page reads at most, whatever its filters


# ------------------------------------------------------------------ resources


async def create_resource(
    deps: GatewayDeps, principal: Principal, body: ResourceCreate, idempotency_key: str | None
) -> Accepted:
    def plan(ids: Ids) -> Plan:
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
        return Plan(command, record, f"/v1/resources/{ids.entity_id}", out.model_dump(mode="json"))

    accepted = await accept(
        deps,
        principal,
        operation="create_resource",
        payload=body.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        plan=plan,
    )
    deps.known_resources.add(accepted.entity_id)  # its accepted record exists now
    return accepted


def _resource_out(view: ResourceView | None) -> ResourceOut | None:
    """The view as the API shows it; None while the resource is not created yet.

    The consumer stores a resource it first sees through a booking with no name or
    capacity until ResourceCreated arrives: it exists (bookings on it are fine), but
    there is nothing to show, so reads fall back as if it were not projected yet.
    """
    if view is None or view.name is None or view.capacity is None:
        return None
    return ResourceOut(
        id=UUID(view.resource_id),
        name=view.name,
        capacity=view.capacity,
        available=view.available,
        updated_at=view.updated_at,
    )


async def get_resource(deps: GatewayDeps, resource_id: UUID) -> ResourceOut:
    if (out := _resource_out(await deps.views.get_resource(resource_id))) is not None:
        return out
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
    # A resource not created yet is left out; the cursor still walks the stored ones.
    items = [out for v in page if (out := _resource_out(v)) is not None]
    more = len(views) > limit
    return ResourcePage(items=items, next_cursor=UUID(page[-1].resource_id) if more else None)


# ------------------------------------------------------------------ bookings


async def _resource_exists(deps: GatewayDeps, resource_id: UUID) -> bool:
    """Seen in the views or accepted here; remembered, since a resource is never deleted."""
    if deps.known_resources.knows(resource_id):
        return True
    exists = (
        await deps.views.get_resource(resource_id) is not None
        or await deps.accepted.get(resource_id, AcceptedKind.RESOURCE) is not None
    )
    if exists:
        deps.known_resources.add(resource_id)
    return exists


async def request_booking(
    deps: GatewayDeps, principal: Principal, body: BookingCreate, idempotency_key: str | None
) -> Accepted:
    if not await _resource_exists(deps, body.resource_id):
        raise UnknownResourceError(f"resource {body.resource_id} does not exist")

    def plan(ids: Ids) -> Plan:
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
        return Plan(command, record, f"/v1/bookings/{ids.entity_id}", out.model_dump(mode="json"))

    return await accept(
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
        return _booking_out(view)
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


def _booking_out(view: BookingView) -> BookingOut:
    return BookingOut(
        id=UUID(view.booking_id),
        resource_id=UUID(view.resource_id),
        quantity=view.quantity,
        status=view.status.value,
        reason=view.reason,
        accepted_at=view.accepted_at,
        updated_at=view.updated_at,
    )


async def list_bookings(
    deps: GatewayDeps,
    principal: Principal,
    *,
    cursor: int | None,
    limit: int,
    status: DecidedStatus | None = None,
    resource_id: UUID | None = None,
) -> BookingPage:
    """The principal's decided bookings, newest first, read entry by entry down its list
    (``_id`` reads only, ``limit`` at a time, concurrently). A filtered page stops after
    :data:`LIST_READS_MAX` entries even when it has fewer than ``limit`` items, so a rare
    match never costs a page a walk through the whole list."""
    number = cursor if cursor is not None else await deps.views.newest_listed(principal.sub)
    items: list[BookingOut] = []
    seen: set[str] = set()  # an entry listed twice by two workers racing on a partition
    reads_left = LIST_READS_MAX
    while number >= 1 and len(items) < limit and reads_left > 0:
        numbers = list(range(number, max(number - min(limit, reads_left), 0), -1))
        reads_left -= len(numbers)
        for listed_as, view in zip(
            numbers, await deps.views.listed(principal.sub, numbers), strict=True
        ):
            number = listed_as - 1
            if view is None or view.booking_id in seen:
                continue
            seen.add(view.booking_id)
            if (status is None or view.status.value == status) and (
                resource_id is None or view.resource_id == str(resource_id)
            ):
                items.append(_booking_out(view))
                if len(items) == limit:
                    break
    return BookingPage(items=items, next_cursor=encode_list_cursor(number) if number else None)


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
    return Accepted(f"/v1/bookings/{booking_id}", current.model_dump(mode="json"), booking_id)
