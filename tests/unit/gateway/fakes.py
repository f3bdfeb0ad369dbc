"""Hand-written fakes of the gateway's ports (gateway.ports), given as create_app(overrides=)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
    BookingView,
    DependencyUnavailableError,
    IdempotencyRecord,
    IdempotencyState,
    ResourceView,
    UnsafeDocumentError,
)
from gateway.service import GatewayDeps
from shared.events import Command
from shared.mongo import unsafe_keys

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@dataclass
class FakePublisher:
    """Records what Kafka would have acked; ``fail=True`` acts like an unreachable broker."""

    published: list[Command] = field(default_factory=list)
    fail: bool = False
    delay: float = 0.0  # seconds "in flight", so concurrent requests really overlap

    async def publish(self, command: Command) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise DependencyUnavailableError("kafka", "KafkaTimeoutError")
        self.published.append(command)


@dataclass
class FakeViews:
    resources: dict[UUID, ResourceView] = field(default_factory=dict)
    bookings: dict[UUID, BookingView] = field(default_factory=dict)

    def add_resource(self, resource_id: UUID, *, capacity: int = 10, available: int = 10) -> None:
        self.resources[resource_id] = ResourceView(
            id=resource_id, name="Hall A", capacity=capacity, available=available, updated_at=NOW
        )

    def add_booking(
        self, booking_id: UUID, *, principal: str, resource_id: UUID, status: str,
        reason: str | None = None, quantity: int = 2,
    ) -> None:  # fmt: skip
        self.bookings[booking_id] = BookingView(
            id=booking_id,
            principal=principal,
            resource_id=resource_id,
            quantity=quantity,
            status=status,
            reason=reason,
            accepted_at=NOW,
            updated_at=NOW + timedelta(seconds=1),
        )

    async def get_resource(self, resource_id: UUID) -> ResourceView | None:
        return self.resources.get(resource_id)

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]:
        ordered = sorted(self.resources.values(), key=lambda r: str(r.id))
        if after is not None:
            ordered = [r for r in ordered if str(r.id) > str(after)]
        return ordered[:limit]

    async def get_booking(self, booking_id: UUID) -> BookingView | None:
        return self.bookings.get(booking_id)


@dataclass
class FakeAccepted:
    records: dict[UUID, AcceptedRecord] = field(default_factory=dict)

    async def record(self, record: AcceptedRecord) -> None:
        self.records.setdefault(record.id, record)

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None:
        rec = self.records.get(entity_id)
        return rec if rec is not None and rec.kind is kind else None


@dataclass
class FakeIdempotency:
    """Unique by key_id, like the real collection's _id."""

    records: dict[str, IdempotencyRecord] = field(default_factory=dict)

    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        if record.key_id in self.records:
            return self.records[record.key_id]
        self.records[record.key_id] = record
        return None

    async def get(self, key_id: str) -> IdempotencyRecord | None:
        return self.records.get(key_id)

    async def complete(self, key_id: str, *, location: str, response: dict[str, Any]) -> None:
        if unsafe_keys(response):
            raise UnsafeDocumentError(str(unsafe_keys(response)))
        self.records[key_id] = replace(
            self.records[key_id],
            state=IdempotencyState.COMPLETED,
            location=location,
            response=response,
        )

    async def mark_failed(self, key_id: str) -> None:
        rec = self.records[key_id]
        if rec.state is IdempotencyState.PENDING:
            self.records[key_id] = replace(rec, state=IdempotencyState.FAILED)


@dataclass
class Fakes:
    publisher: FakePublisher = field(default_factory=FakePublisher)
    views: FakeViews = field(default_factory=FakeViews)
    accepted: FakeAccepted = field(default_factory=FakeAccepted)
    idempotency: FakeIdempotency = field(default_factory=FakeIdempotency)
    clock: Clock = field(default_factory=Clock)
    ready: dict[str, bool] = field(default_factory=lambda: {"mongodb": True, "kafka": True})

    def deps(self) -> GatewayDeps:
        def check(name: str) -> Any:
            async def probe() -> bool:
                return self.ready[name]

            return probe

        return GatewayDeps(
            publisher=self.publisher,
            views=self.views,
            accepted=self.accepted,
            idempotency=self.idempotency,
            readiness={name: check(name) for name in self.ready},
            clock=self.clock,
            idempotency_wait_seconds=0.2,
            idempotency_poll_seconds=0.01,
        )
