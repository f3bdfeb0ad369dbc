"""The decide loop: one command in, at most one ledger entry and one event out.

1. If the command's operation (op_key) already has its entry, re-publish that entry's event
   (a redelivery after a crash between append and publish heals here).
2. Otherwise load the resource's newest entry, decide, and append at seq + 1.
3. Losing the seq race (ConcurrencyConflict) means someone else changed the resource:
   reload and decide again, a bounded number of times.
4. Publish after the append, so an event never announces something that is not recorded.

The unique indexes behind ``LedgerRepository.append`` are the only concurrency control;
nothing here reads, modifies and writes back a document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from structlog.stdlib import BoundLogger

from booking.adapters import EventPublisher, LedgerRepository
from booking.domain import (
    AlreadyDecided,
    ConcurrencyConflict,
    ContentionError,
    Decision,
    decide,
    decide_key,
    op_key_for,
    replay,
)
from booking.metrics import BookingMetrics
from shared.events import CancelBooking, CreateResource, Message, RequestBooking, utcnow
from shared.logging import get_logger
from shared.messaging import RetryPolicy

log = get_logger(__name__)

# Back off a little between seq races so a crowd of writers on one hot resource spreads out.
CONFLICT_BACKOFF = RetryPolicy(attempts=50, base_delay=0.001, max_delay=0.05)
# Concurrent calls on one resource inside one process queue up instead of racing each other
# (a subscriber calls one at a time anyway). Bounded stripes, so no lock per resource leaks.
LOCK_STRIPES = 64


class Outcome(StrEnum):
    DECIDED = "decided"
    """A new entry was appended and its event published."""
    REPLAYED = "replayed"
    """The operation was already decided; its event was published again."""
    IGNORED = "ignored"
    """Nothing to record and nothing to announce (logged with the reason)."""


Command = CreateResource | RequestBooking | CancelBooking


class CommandHandler:
    def __init__(
        self,
        ledger: LedgerRepository,
        publisher: EventPublisher,
        metrics: BookingMetrics,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 50,
        backoff: RetryPolicy = CONFLICT_BACKOFF,
    ) -> None:
        self._ledger = ledger
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._stripes = [asyncio.Lock() for _ in range(LOCK_STRIPES)]

    async def __call__(self, message: Message) -> None:
        """The shape :func:`shared.messaging.process_record` calls."""
        await self.handle(message)

    async def handle(self, message: Message) -> Outcome:
        if not isinstance(message, CreateResource | RequestBooking | CancelBooking):
            raise TypeError(f"booking does not handle {type(message).__name__}")
        async with self._stripes[message.resource_id.int % LOCK_STRIPES]:
            return await self._handle(message)

    async def _handle(self, command: Command) -> Outcome:
        op_key = op_key_for(command)
        bound = log.bind(
            op_key=op_key, command_id=str(command.command_id), resource_id=str(command.resource_id)
        )

        existing = await self._ledger.find_by_op_key(op_key)
        if existing is not None:
            return await self._answer(replay(existing, command), bound)

        # A booking's decision never changes once recorded, so one look-up serves every round.
        booking = None
        if isinstance(command, CancelBooking):
            booking = await self._ledger.find_by_op_key(decide_key(command.booking_id))

        for attempt in range(self._max_attempts):
            latest = await self._ledger.latest(command.resource_id)
            decision = decide(latest, command, self._clock(), booking=booking)
            if decision.entry is None:
                # A racing worker may have decided this very operation since we looked.
                existing = await self._ledger.find_by_op_key(op_key)
                if existing is not None:
                    return await self._answer(replay(existing, command), bound)
                return await self._answer(decision, bound)
            try:
                await self._ledger.append(decision.entry)
            except AlreadyDecided as exc:
                return await self._answer(replay(exc.existing, command), bound)
            except ConcurrencyConflict:
                bound.debug("seq_conflict", seq=decision.entry.seq, attempt=attempt + 1)
                await asyncio.sleep(self._backoff.delay(attempt))
                continue
            self._metrics.decided(decision.entry.kind)
            bound.info(
                "decided",
                kind=decision.entry.kind.value,
                seq=decision.entry.seq,
                reserved=decision.entry.reserved,
                capacity=decision.entry.capacity,
                reason=decision.entry.reason,
            )
            if decision.event is not None:
                await self._publisher.publish(decision.event)
            return Outcome.DECIDED
        raise ContentionError(
            f"{op_key}: lost the ledger race {self._max_attempts} times on resource "
            f"{command.resource_id}"
        )

    async def _answer(self, decision: Decision, bound: BoundLogger) -> Outcome:
        if decision.event is None:
            bound.info("ignored", note=decision.note)
            return Outcome.IGNORED
        await self._publisher.publish(decision.event)
        bound.info("replayed", event_id=str(decision.event.event_id), note=decision.note)
        return Outcome.REPLAYED
