"""Hand-written fakes of the gateway's ports (gateway.ports), given as create_app(overrides=),
and of the one collection method the group inserter uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pymongo.errors import BulkWriteError, ServerSelectionTimeoutError

from gateway.bootstrap import GatewayDeps
from gateway.hub import Hub
from gateway.ports import (
    AcceptedKind,
    AcceptedRecord,
    DependencyUnavailableError,
    IdempotencyRecord,
    IdempotencyState,
)
from shared.events import Command, Event
from shared.mongo import Document
from shared.readmodel import BookingStatus, BookingView, ResourceView
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class FakePublisher:
    """Records what Kafka would have acked; ``fail=True`` acts like an unreachable broker."""

    published: list[Command] = field(default_factory=list)
    fail: bool = False
    outcome_unknown: bool = False  # with fail: the command was handed over, then no answer
    delay: float = 0.0  # seconds "in flight", so concurrent requests really overlap

    async def publish(self, command: Command) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise DependencyUnavailableError(
                "kafka", "KafkaTimeoutError", outcome_unknown=self.outcome_unknown
            )
        self.published.append(command)


@dataclass
class FakeViews:
    """The read model as the consumer stores it (shared.readmodel): ids are strings."""

    resources: dict[UUID, ResourceView] = field(default_factory=dict)
    bookings: dict[UUID, BookingView] = field(default_factory=dict)
    # each principal's list of bookings (shared.readmodel.BOOKING_LISTS), entry 1 first
    lists: dict[str, list[BookingView]] = field(default_factory=dict)
    resource_reads: int = 0
    list_reads: int = 0

    def add_resource(
        self, resource_id: UUID, *, capacity: int = 10, available: int = 10, named: bool = True
    ) -> None:
        """``named=False``: seen only through bookings, before ResourceCreated reached it."""
        self.resources[resource_id] = ResourceView(
            resource_id=str(resource_id),
            name="Hall A" if named else None,
            capacity=capacity if named else None,
            available=available,
            version=1,
            created_at=NOW if named else None,
            updated_at=NOW,
        )

    def add_booking(
        self, booking_id: UUID, *, principal: str, resource_id: UUID, status: str,
        reason: str | None = None, quantity: int = 2,
    ) -> None:  # fmt: skip
        self.bookings[booking_id] = BookingView(
            booking_id=str(booking_id),
            principal=principal,
            resource_id=str(resource_id),
            quantity=quantity,
            status=BookingStatus(status),
            reason=reason,
            accepted_at=NOW,
            updated_at=NOW + timedelta(seconds=1),
        )
        # Listed as the consumer lists it: a new booking last, a known one in its place.
        view = self.bookings[booking_id]
        listed = self.lists.setdefault(principal, [])
        place = next((i for i, v in enumerate(listed) if v.booking_id == view.booking_id), None)
        if place is None:
            listed.append(view)
        else:
            listed[place] = view

    async def get_resource(self, resource_id: UUID) -> ResourceView | None:
        self.resource_reads += 1
        return self.resources.get(resource_id)

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]:
        ordered = sorted(self.resources.values(), key=lambda r: r.resource_id)
        if after is not None:
            ordered = [r for r in ordered if r.resource_id > str(after)]
        return ordered[:limit]

    async def get_booking(self, booking_id: UUID) -> BookingView | None:
        return self.bookings.get(booking_id)

    async def newest_listed(self, principal: str) -> int:
        return len(self.lists.get(principal, []))

    async def listed(self, principal: str, numbers: Sequence[int]) -> list[BookingView | None]:
        self.list_reads += len(numbers)
        listed = self.lists.get(principal, [])
        return [listed[n - 1] if 1 <= n <= len(listed) else None for n in numbers]


def _mongo_down() -> DependencyUnavailableError:
    return DependencyUnavailableError("mongodb", "ServerSelectionTimeoutError")


@dataclass
class FakeAccepted:
    """``fail=True`` acts like an unreachable MongoDB; ``writes``/``reads`` count round trips."""

    records: dict[UUID, AcceptedRecord] = field(default_factory=dict)
    fail: bool = False
    writes: int = 0
    reads: int = 0

    async def record(self, record: AcceptedRecord) -> None:
        self.writes += 1
        if self.fail:
            raise _mongo_down()
        self.records.setdefault(record.id, record)

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None:
        self.reads += 1
        rec = self.records.get(entity_id)
        return rec if rec is not None and rec.kind is kind else None


@dataclass
class FakeIdempotency:
    """Unique by key_id, like the real collection's _id. ``fail=True``: MongoDB is down."""

    records: dict[str, IdempotencyRecord] = field(default_factory=dict)
    fail: bool = False
    writes: int = 0
    reads: int = 0

    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        self.writes += 1
        if self.fail:
            raise _mongo_down()
        if record.key_id in self.records:
            self.reads += 1  # the real store reads the existing record back
            return self.records[record.key_id]
        self.records[record.key_id] = record
        return None

    async def get(self, key_id: str) -> IdempotencyRecord | None:
        self.reads += 1
        return self.records.get(key_id)

    async def mark_failed(self, key_id: str) -> None:
        self.writes += 1
        if self.fail:
            raise _mongo_down()
        rec = self.records[key_id]
        if rec.state is IdempotencyState.PENDING:
            self.records[key_id] = replace(rec, state=IdempotencyState.FAILED)


@dataclass
class FakeEventFeed:
    """bookify.events as this process reads it: ``emit`` delivers an event to the hub."""

    deliver: Callable[[Event], None] | None = None
    closed: bool = False

    async def start(self, deliver: Callable[[Event], None]) -> None:
        self.deliver = deliver

    async def close(self) -> None:
        self.closed = True

    def emit(self, event: Event) -> None:
        assert self.deliver is not None, "the feed was not started"
        self.deliver(event)


@dataclass
class Fakes:
    publisher: FakePublisher = field(default_factory=FakePublisher)
    views: FakeViews = field(default_factory=FakeViews)
    accepted: FakeAccepted = field(default_factory=FakeAccepted)
    idempotency: FakeIdempotency = field(default_factory=FakeIdempotency)
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW, tick=0.001))
    ready: dict[str, bool] = field(default_factory=lambda: {"mongodb": True, "kafka": True})
    hub: Hub = field(default_factory=Hub)
    feed: FakeEventFeed = field(default_factory=FakeEventFeed)

    def deps(self) -> GatewayDeps:
        def check(name: str) -> Any:
            async def probe() -> bool:
                return self.ready[name]

            return probe

        self.feed.deliver = self.hub.publish_event  # what the lifespan's connect does
        return GatewayDeps(
            publisher=self.publisher,
            views=self.views,
            accepted=self.accepted,
            idempotency=self.idempotency,
            readiness={name: check(name) for name in self.ready},
            clock=self.clock,
            idempotency_wait_seconds=0.2,
            idempotency_poll_seconds=0.01,
            feed=self.feed,
            hub=self.hub,
        )


@dataclass
class FakeCollection:
    """A collection's unordered ``insert_many`` as MongoDB answers it: unique ``_id``, a
    BulkWriteError naming each failed document by index, the others written."""

    docs: dict[Any, Document] = field(default_factory=dict)
    calls: list[list[Document]] = field(default_factory=list)
    outage: bool = False  # raise what PyMongo raises when no server answers
    invalid: set[Any] = field(default_factory=set)  # _ids refused with a non-duplicate error
    write_concern_error: bool = False
    hold: asyncio.Event | None = None  # each insert_many stays in flight until this is set
    bug: Exception | None = None  # raised once by the next insert_many, as a client bug would

    async def insert_many(self, documents: list[Document], *, ordered: bool) -> object:
        assert ordered is False, "the group inserter must not let one failure stop the rest"
        self.calls.append(list(documents))
        if self.hold is not None:
            await self.hold.wait()
        if self.bug is not None:
            bug, self.bug = self.bug, None
            raise bug
        if self.outage:
            raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")
        errors: list[dict[str, Any]] = []
        for index, doc in enumerate(documents):
            if doc["_id"] in self.invalid:
                errors.append({"index": index, "code": 2, "errmsg": "bad value", "op": doc})
            elif doc["_id"] in self.docs:
                errors.append(
                    {"index": index, "code": 11000, "errmsg": "E11000 duplicate key", "op": doc}
                )
            else:
                self.docs[doc["_id"]] = doc
        concern = [{"code": 64, "errmsg": "waiting for replication timed out"}]
        if errors or self.write_concern_error:
            raise BulkWriteError(
                {
                    "writeErrors": errors,
                    "writeConcernErrors": concern if self.write_concern_error else [],
                    "nInserted": len(documents) - len(errors),
                }
            )
        return None
