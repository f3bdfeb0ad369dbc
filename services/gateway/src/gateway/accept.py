"""The accept path every write shares: one publish per Idempotency-Key, one 202 for all.

Store round trips per request: the key's reservation (only with a key) and the accepted
record, both inserts the adapters group-commit with other requests' (gateway.adapters).
Whether a key's request was answered is not written separately: its accepted record exists
exactly then, because that record is written only after the Kafka ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from gateway.errors import IdempotencyKeyReusedError
from gateway.ports import (
    AcceptedRecord,
    AcceptedStore,
    CommandPublisher,
    DependencyUnavailableError,
    IdempotencyRecord,
    IdempotencyState,
    IdempotencyStore,
)
from shared.auth import Principal
from shared.events import Command
from shared.logging import get_logger
from shared.telemetry import annotate_span

log = get_logger(__name__)


class AcceptPorts(Protocol):
    """What the accept path uses of the gateway's deps (``GatewayDeps`` has it all), read
    only: this module needs nothing else, and imports nothing of the use cases."""

    @property
    def publisher(self) -> CommandPublisher: ...
    @property
    def accepted(self) -> AcceptedStore: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def idempotency_wait_seconds(self) -> float: ...
    @property
    def idempotency_poll_seconds(self) -> float: ...


@dataclass(frozen=True)
class Accepted:
    """A 202: where to poll and the exact body (the same again for a repeated key)."""

    location: str
    body: dict[str, Any]
    entity_id: UUID
    replayed: bool = False


@dataclass(frozen=True)
class Ids:
    """Chosen before publishing, so a retry of the same key can reuse them."""

    entity_id: UUID
    command_id: UUID
    accepted_at: datetime


@dataclass(frozen=True)
class Plan:
    """What one set of ids means for a request: the command, its record, its 202."""

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


def new_ids(clock: Callable[[], datetime]) -> Ids:
    now = clock()
    # MongoDB keeps milliseconds: a replay rebuilt from the stored reservation must show
    # the very accepted_at the first 202 showed.
    accepted_at = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
    return Ids(uuid4(), uuid4(), accepted_at)


async def accept(
    deps: AcceptPorts,
    principal: Principal,
    *,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    plan: Callable[[Ids], Plan],
) -> Accepted:
    """Publish once per Idempotency-Key, record it, and answer the same 202 every time.

    The key's reservation (with the ids to use) is written *before* publishing: a retry
    after a timeout whose command did land reuses the same booking and command ids, and
    the booking service, idempotent on those ids, decides it once.
    """
    ids = new_ids(deps.clock)
    key_id: str | None = None
    existing: IdempotencyRecord | None = None  # an earlier try of the same key
    if idempotency_key is not None:
        key_id = idempotency_key_id(principal.sub, operation, idempotency_key)
        digest = request_hash(operation, payload)
        try:
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
                # Same principal, key and body: the same ids, hence the same command and 202.
                ids = Ids(existing.entity_id, existing.command_id, existing.accepted_at)
                if (answered := await _original_answer(deps, existing, plan(ids))) is not None:
                    return answered
                # The original failed or is stuck: take it over with *its* ids. Publishing
                # the same command twice is harmless; downstream dedupes by command/booking id.
        except DependencyUnavailableError as exc:
            # Without the key's record this try cannot know whether an earlier one of the
            # key landed: "not accepted" could leave a client the booking of a first try it
            # was told "unknown" of (found by bookify chaos, seed 509, MongoDB just back).
            raise DependencyUnavailableError(
                exc.dependency, exc.detail, outcome_unknown=True
            ) from exc

    p = plan(ids)
    annotate_span(
        command_id=p.command.command_id,
        booking_id=getattr(p.command, "booking_id", None),
        resource_id=getattr(p.command, "resource_id", None),
    )
    try:
        await deps.publisher.publish(p.command)
    except DependencyUnavailableError as exc:
        if key_id is not None:
            await _best_effort_mark_failed(deps, key_id)
        if existing is not None and not exc.outcome_unknown:
            # This try reached nothing, but an earlier one of the key may yet land (it was
            # told "unknown", or is still in flight): "not accepted" would be a lie that
            # leaves its client a booking it was never told about (found by bookify chaos).
            raise DependencyUnavailableError(
                exc.dependency, exc.detail, outcome_unknown=True
            ) from exc
        raise
    # After the ack, before the 202: a GET on the Location must never 404. This insert is
    # also what tells a retry of the key that its 202 was sent.
    try:
        await deps.accepted.record(p.record)
    except DependencyUnavailableError as exc:
        # The command is durable in Kafka: a 503 now would be untrue, and a client without a
        # key that retried as told would book twice. It answers 202; until the read model
        # has the outcome a GET may 404, and a retry of the key re-publishes the same ids.
        log.error(
            "accepted record not stored after the ack", entity_id=str(ids.entity_id), error=str(exc)
        )
    return Accepted(p.location, p.body, ids.entity_id)


async def _original_answer(
    deps: AcceptPorts, reservation: IdempotencyRecord, p: Plan
) -> Accepted | None:
    """The original's 202 once its accepted record exists; None to take the key over.

    A duplicate arriving while the original is in flight waits for it, up to
    ``idempotency_wait_seconds``; a FAILED reservation is taken over at once.
    """
    if reservation.state is IdempotencyState.COMPLETED and reservation.response is not None:
        # An older gateway's record: it stored the response it sent.
        return Accepted(
            reservation.location or p.location,
            reservation.response,
            reservation.entity_id,
            replayed=True,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deps.idempotency_wait_seconds
    while True:
        if await deps.accepted.get(p.record.id, p.record.kind) is not None:
            return Accepted(p.location, p.body, p.record.id, replayed=True)
        if reservation.state is IdempotencyState.FAILED or loop.time() >= deadline:
            return None
        await asyncio.sleep(deps.idempotency_poll_seconds)
        latest = await deps.idempotency.get(reservation.key_id)
        if latest is None:  # cannot happen with a unique _id, unless someone deleted it
            return None
        reservation = latest


async def _best_effort_mark_failed(deps: AcceptPorts, key_id: str) -> None:
    try:
        await deps.idempotency.mark_failed(key_id)
    except DependencyUnavailableError:
        # Still "pending": a retry just waits idempotency_wait_seconds before taking over.
        log.warning("could not mark idempotency reservation failed", key_id=key_id)
