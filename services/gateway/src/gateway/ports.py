"""What the gateway needs from the outside world, as Protocols.

The Mongo and Kafka adapters live in ``adapters.py``; unit tests pass hand-written fakes
(tests/unit/gateway/fakes.py) through :class:`gateway.main.GatewayDeps` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from shared.events import Command


class AcceptedKind(StrEnum):
    BOOKING = "booking"
    RESOURCE = "resource"


@dataclass(frozen=True)
class AcceptedRecord:
    """A command Kafka has acknowledged, so a GET right after the 202 answers ``pending``."""

    id: UUID
    kind: AcceptedKind
    principal: str
    resource_id: UUID
    command_id: UUID
    accepted_at: datetime
    quantity: int | None = None
    name: str | None = None
    capacity: int | None = None


@dataclass(frozen=True)
class ResourceView:
    id: UUID
    name: str
    capacity: int
    available: int
    updated_at: datetime


@dataclass(frozen=True)
class BookingView:
    id: UUID
    principal: str
    resource_id: UUID
    quantity: int
    status: str
    reason: str | None
    accepted_at: datetime
    updated_at: datetime


class IdempotencyState(StrEnum):
    PENDING = "pending"  # reserved; the command may or may not be in Kafka yet
    FAILED = "failed"  # the publish failed; a retry may take the reservation over at once
    COMPLETED = "completed"  # the 202 was sent; replay ``response``


@dataclass(frozen=True)
class IdempotencyRecord:
    """One Idempotency-Key use. ``key_id`` hashes principal+operation+key (unique _id)."""

    key_id: str
    principal: str
    operation: str
    request_hash: str
    entity_id: UUID
    command_id: UUID
    accepted_at: datetime
    state: IdempotencyState = IdempotencyState.PENDING
    updated_at: datetime | None = None
    location: str | None = None
    response: dict[str, Any] | None = field(default=None)


class DependencyUnavailableError(Exception):
    """Kafka or MongoDB did not answer in time: the client should retry (503)."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


class UnsafeDocumentError(ValueError):
    """A document with ``$``-prefixed or dotted keys was about to be written."""


class CommandPublisher(Protocol):
    async def publish(self, command: Command) -> None:
        """Return only once Kafka acknowledged the command (acks=all).

        Raises :class:`DependencyUnavailableError` on any broker error or timeout.
        """


class ViewReader(Protocol):
    """The consumer's read model (``bookify_views``), read-only for the gateway."""

    async def get_resource(self, resource_id: UUID) -> ResourceView | None: ...

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]: ...

    async def get_booking(self, booking_id: UUID) -> BookingView | None: ...


class AcceptedStore(Protocol):
    async def record(self, record: AcceptedRecord) -> None:
        """Insert; an existing record with the same id is kept (a retried publish)."""

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None: ...


class IdempotencyStore(Protocol):
    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Insert ``record``; on a duplicate key_id return the stored record instead."""

    async def get(self, key_id: str) -> IdempotencyRecord | None: ...

    async def complete(self, key_id: str, *, location: str, response: dict[str, Any]) -> None: ...

    async def mark_failed(self, key_id: str) -> None: ...


ReadinessCheck = Callable[[], Awaitable[bool]]
