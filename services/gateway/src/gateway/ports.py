"""What the gateway needs from the outside world, as Protocols.

The Mongo and Kafka adapters live in the ``gateway.adapters`` package; unit tests pass
hand-written fakes (tests/unit/gateway/fakes.py) through :class:`gateway.bootstrap.GatewayDeps`
instead. The views are the read model's own types, from :mod:`shared.readmodel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from shared.events import Command, Event
from shared.readmodel import BookingView, ResourceView


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


class IdempotencyState(StrEnum):
    """A reservation's state. Whether its 202 was sent is not stored here: the accepted
    record of its ``entity_id`` exists exactly then (it is written only after the Kafka ack),
    which saves the request a write."""

    PENDING = "pending"  # reserved; the command may or may not be in Kafka yet
    FAILED = "failed"  # the publish failed; a retry may take the reservation over at once
    COMPLETED = "completed"  # only in records of older gateways, which stored ``response``


@dataclass(frozen=True)
class IdempotencyRecord:
    """One Idempotency-Key use. ``key_id`` hashes principal+operation+key (unique _id).

    The ids (and ``accepted_at``) are chosen before publishing, so the 202 is rebuilt from
    them and the request; ``location``/``response`` are only read from older records.
    """

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
    """Kafka or MongoDB did not answer in time: the client should retry (503).

    ``outcome_unknown``: the command was handed to Kafka and no answer came, so it may
    still be accepted; only a retry with the same Idempotency-Key can tell (and books once).
    """

    def __init__(self, dependency: str, detail: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
        self.outcome_unknown = outcome_unknown


class UnsafeDocumentError(ValueError):
    """A document with ``$``-prefixed or dotted keys was about to be written."""


class CommandPublisher(Protocol):
    async def publish(self, command: Command) -> None:
        """Return only once Kafka acknowledged the command (acks=all).

        Raises :class:`DependencyUnavailableError` on any broker error or timeout, with
        ``outcome_unknown`` once the command was handed to the producer.
        """


class ViewReader(Protocol):
    """The consumer's read model (:mod:`shared.readmodel`), read-only for the gateway.

    Views come back as stored: a resource the consumer has seen only through bookings has
    no name or capacity yet, and :mod:`gateway.use_cases` treats it as not yet created.
    """

    async def get_resource(self, resource_id: UUID) -> ResourceView | None: ...

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]: ...

    async def get_booking(self, booking_id: UUID) -> BookingView | None: ...

    async def newest_listed(self, principal: str) -> int:
        """The number of the newest entry in the principal's list of bookings (0: none yet;
        :data:`shared.readmodel.BOOKING_LISTS`)."""

    async def listed(self, principal: str, numbers: Sequence[int]) -> list[BookingView | None]:
        """Those entries of the principal's list, in the order asked (None: no such entry)."""


class AcceptedStore(Protocol):
    async def record(self, record: AcceptedRecord) -> None:
        """Insert; an existing record with the same id is kept (a retried publish).

        Also what marks an Idempotency-Key's request as answered (see IdempotencyState).
        """

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None: ...


class IdempotencyStore(Protocol):
    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Insert ``record``; on a duplicate key_id return the stored record instead."""

    async def get(self, key_id: str) -> IdempotencyRecord | None: ...

    async def mark_failed(self, key_id: str) -> None:
        """PENDING -> FAILED (a retry need not wait); never touches another state."""


class EventFeed(Protocol):
    """This process's own reading of ``bookify.events``, for push (gateway.hub)."""

    async def start(self, deliver: Callable[[Event], None]) -> None:
        """Hand every event read from now on to ``deliver``, in each partition's order.

        Returns at once: reading runs in the background and waits out a broker that is
        down, so the gateway starts without Kafka as it does for publishing.
        """

    async def close(self) -> None: ...
