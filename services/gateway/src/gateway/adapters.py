"""The real adapters: MongoDB (PyMongo async) and Kafka (FastStream's KafkaBroker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaClient
from faststream.kafka import KafkaBroker
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

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
from shared.events import Command, encode, utcnow
from shared.logging import get_logger
from shared.mongo import Document, unsafe_keys

log = get_logger(__name__)


@contextmanager
def _mongo_errors() -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        raise DependencyUnavailableError("mongodb", type(exc).__name__) from None


def safe_document(doc: Document) -> Document:
    """Second guard behind the request models' extra="forbid": refuse operator-like keys."""
    if bad := unsafe_keys(doc):
        raise UnsafeDocumentError(f"refusing to write keys {bad}")
    return doc


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


# ------------------------------------------------------------------ views (read-only)


class MongoViewReader:
    """Reads the consumer's ``resources`` and ``bookings`` collections."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._resources: AsyncCollection[Document] = db["resources"]
        self._bookings: AsyncCollection[Document] = db["bookings"]

    @staticmethod
    def _resource(doc: Mapping[str, Any]) -> ResourceView:
        return ResourceView(
            id=_uuid(doc["_id"]),
            name=str(doc["name"]),
            capacity=int(doc["capacity"]),
            available=int(doc["available"]),
            updated_at=doc.get("updated_at") or doc["created_at"],
        )

    async def get_resource(self, resource_id: UUID) -> ResourceView | None:
        with _mongo_errors():
            doc = await self._resources.find_one({"_id": str(resource_id)})
        return None if doc is None else self._resource(doc)

    async def list_resources(self, *, after: UUID | None, limit: int) -> list[ResourceView]:
        query: Document = {} if after is None else {"_id": {"$gt": str(after)}}
        with _mongo_errors():
            cursor = self._resources.find(query).sort("_id", ASCENDING).limit(limit)
            docs = await cursor.to_list(length=limit)
        return [self._resource(d) for d in docs]

    async def get_booking(self, booking_id: UUID) -> BookingView | None:
        with _mongo_errors():
            doc = await self._bookings.find_one({"_id": str(booking_id)})
        if doc is None:
            return None
        return BookingView(
            id=_uuid(doc["_id"]),
            principal=str(doc["principal"]),
            resource_id=_uuid(doc["resource_id"]),
            quantity=int(doc["quantity"]),
            status=str(doc["status"]),
            reason=doc.get("reason"),
            accepted_at=doc["accepted_at"],
            updated_at=doc.get("updated_at") or doc["accepted_at"],
        )


# ------------------------------------------------------------------ gateway's own db


class MongoAcceptedStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._col: AsyncCollection[Document] = db["accepted"]

    async def record(self, record: AcceptedRecord) -> None:
        doc: Document = {
            "_id": str(record.id),
            "kind": record.kind.value,
            "principal": record.principal,
            "resource_id": str(record.resource_id),
            "command_id": str(record.command_id),
            "accepted_at": record.accepted_at,
        }
        if record.kind is AcceptedKind.BOOKING:
            doc["quantity"] = record.quantity
        else:
            doc["name"] = record.name
            doc["capacity"] = record.capacity
        with _mongo_errors(), suppress(DuplicateKeyError):  # a retried publish: keep the first
            await self._col.insert_one(safe_document(doc))

    async def get(self, entity_id: UUID, kind: AcceptedKind) -> AcceptedRecord | None:
        with _mongo_errors():
            doc = await self._col.find_one({"_id": str(entity_id), "kind": kind.value})
        if doc is None:
            return None
        return AcceptedRecord(
            id=_uuid(doc["_id"]),
            kind=AcceptedKind(doc["kind"]),
            principal=str(doc["principal"]),
            resource_id=_uuid(doc["resource_id"]),
            command_id=_uuid(doc["command_id"]),
            accepted_at=doc["accepted_at"],
            quantity=doc.get("quantity"),
            name=doc.get("name"),
            capacity=doc.get("capacity"),
        )


class MongoIdempotencyStore:
    """``idempotency`` records; the unique ``_id`` (hash of principal+operation+key)
    resolves concurrent duplicates, which FerretDB and MongoDB both enforce."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._col: AsyncCollection[Document] = db["idempotency"]

    @staticmethod
    def _from_doc(doc: Mapping[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(
            key_id=str(doc["_id"]),
            principal=str(doc["principal"]),
            operation=str(doc["operation"]),
            request_hash=str(doc["request_hash"]),
            entity_id=_uuid(doc["entity_id"]),
            command_id=_uuid(doc["command_id"]),
            accepted_at=doc["accepted_at"],
            state=IdempotencyState(doc["state"]),
            updated_at=doc.get("updated_at"),
            location=doc.get("location"),
            response=doc.get("response"),
        )

    async def reserve(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        doc: Document = {
            "_id": record.key_id,
            "principal": record.principal,
            "operation": record.operation,
            "request_hash": record.request_hash,
            "entity_id": str(record.entity_id),
            "command_id": str(record.command_id),
            "accepted_at": record.accepted_at,
            "state": record.state.value,
            "updated_at": record.updated_at or record.accepted_at,
        }
        with _mongo_errors():
            try:
                await self._col.insert_one(safe_document(doc))
            except DuplicateKeyError:
                existing = await self._col.find_one({"_id": record.key_id})
                if existing is None:  # deleted in between; extremely unlikely, report busy
                    raise DependencyUnavailableError("mongodb", "idempotency race") from None
                return self._from_doc(existing)
        return None

    async def get(self, key_id: str) -> IdempotencyRecord | None:
        with _mongo_errors():
            doc = await self._col.find_one({"_id": key_id})
        return None if doc is None else self._from_doc(doc)

    async def complete(self, key_id: str, *, location: str, response: dict[str, Any]) -> None:
        update: Document = {
            "state": IdempotencyState.COMPLETED.value,
            "location": location,
            "response": response,
            "updated_at": utcnow(),
        }
        with _mongo_errors():
            await self._col.update_one({"_id": key_id}, {"$set": safe_document(update)})

    async def mark_failed(self, key_id: str) -> None:
        with _mongo_errors():
            await self._col.update_one(
                # never downgrade a completed record (a concurrent takeover may have won)
                {"_id": key_id, "state": IdempotencyState.PENDING.value},
                {"$set": {"state": IdempotencyState.FAILED.value}},
            )


async def mongo_ping(client: AsyncMongoClient[Document]) -> bool:
    await client.admin.command("ping")
    return True


# ------------------------------------------------------------------ Kafka


class KafkaCommandPublisher:
    """Publishes commands with FastStream's broker; returns only after acks=all.

    The broker may be down when the gateway starts: connecting is retried lazily, under
    a lock, by the next publish or readiness probe, each bounded by its timeout, so the
    gateway starts and answers 503 instead of hanging.
    """

    RECONNECT_COOLDOWN_SECONDS = 1.0

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topic: str,
        source: str,
        publish_timeout: float,
        connect_timeout: float,
        bootstrap_servers: str,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._broker = broker
        self._bootstrap_servers = bootstrap_servers
        self._on_connect = on_connect
        self._topic = topic
        self._source = source
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()
        self._connected = False
        self._retry_at = 0.0  # loop time before which we do not retry a failed connect

    async def connect(self) -> bool:
        """Try once to connect (bounded by connect_timeout); True when connected."""
        async with self._lock:
            if self._connected:
                return True
            loop = asyncio.get_running_loop()
            if loop.time() < self._retry_at:
                # Fail fast while Kafka is known down: a burst of writes must not queue up
                # behind one connect attempt each.
                return False
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._probe()
                    await self._broker.start()
            except Exception as exc:  # any failure here means "Kafka not reachable yet"
                log.warning("kafka connect failed", error=f"{type(exc).__name__}: {exc}")
                with suppress(Exception):  # drop the half-built producer/admin clients
                    await self._broker.stop()
                self._retry_at = loop.time() + self.RECONNECT_COOLDOWN_SECONDS
                return False
            self._connected = True
        if self._on_connect is not None:
            await self._on_connect()
        return True

    async def _probe(self) -> None:
        # FastStream leaks its half-started producer when bootstrap fails (an "Unclosed
        # AIOKafkaProducer" warning per attempt), so check with a client we close ourselves.
        client = AIOKafkaClient(bootstrap_servers=self._bootstrap_servers)
        try:
            await client.bootstrap()
        finally:
            await client.close()

    async def close(self) -> None:
        async with self._lock:
            self._connected = False
            await self._broker.stop()

    async def publish(self, command: Command) -> None:
        value, headers = encode(command, source=self._source)
        try:
            async with asyncio.timeout(self._publish_timeout):
                if not self._connected and not await self.connect():
                    raise DependencyUnavailableError("kafka", "broker not reachable")
                await self._broker.publish(
                    value,
                    self._topic,
                    key=str(command.partition_key).encode(),
                    headers=headers,
                )
        except DependencyUnavailableError:
            raise
        except Exception as exc:
            # Whatever the client raised (KafkaError, timeout, connection reset), the
            # command is not known to be durable: the caller must answer 503, never 500.
            log.warning(
                "command publish failed",
                ce_type=command.ce_type,
                command_id=str(command.command_id),
                error=f"{type(exc).__name__}: {exc}",
            )
            raise DependencyUnavailableError("kafka", type(exc).__name__) from None

    async def ping(self) -> bool:
        if not self._connected and not await self.connect():
            return False
        return await self._broker.ping(timeout=self._connect_timeout)
