"""The decide loop: one command in, at most one ledger entry and one event out.

1. Decide on the resource's head as this process knows it (:class:`LedgerHeads`: cached, or
   found with primary-key look-ups) and append at seq + 1.
2. Losing the seq race (ConcurrencyConflict) means the head was stale (another writer, e.g. a
   zombie or a rebalance): refresh it forward and decide again, a bounded number of times.
3. An operation (op_key) already recorded is refused by the op_key index at append time
   (AlreadyDecided): re-publish that entry's event, never decide again. So a redelivered
   command costs nothing extra up front; a crash between append and publish heals here.
4. Publish after the append, so an event never announces something that is not recorded.
   Once an entry is stored its event is retried until Kafka takes it, never dead-lettered:
   the seats are taken, so the read model must hear of it.
5. A request that keeps failing is settled (:meth:`CommandHandler.settle`, after it went to
   the DLQ): rejected with ``processing_failed`` in the ledger, so no seat is taken and its
   client is not left with ``pending`` for good.

The per-command cost does not grow with the ledger: every read is by primary key, on every
path a command, a redelivery or a restart can take (docs/DESIGN.md §4).

The unique indexes behind ``LedgerRepository.append`` are the only concurrency control;
nothing here reads, modifies and writes back a document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from opentelemetry.trace import Link
from structlog.stdlib import BoundLogger

from booking.domain import (
    AlreadyDecided,
    ConcurrencyConflict,
    ContentionError,
    Decision,
    LedgerEntry,
    OverRelease,
    decide,
    decide_key,
    op_key_for,
    replay,
)
from booking.metrics import BookingMetrics
from booking.ports import EventPublisher, LedgerRepository
from booking.service_layer.heads import HEADS_CACHED, LedgerHeads
from booking.service_layer.recent import RECENT_ENTRIES, RecentEntries
from shared.events import (
    CancelBooking,
    CreateResource,
    Event,
    Message,
    RequestBooking,
    utcnow,
)
from shared.faults import KillPoint
from shared.logging import get_logger
from shared.messaging import Delivery, RetryPolicy, consuming

log = get_logger(__name__)

# Back off a little between seq races so a crowd of writers on one hot resource spreads out.
CONFLICT_BACKOFF = RetryPolicy(attempts=50, base_delay=0.001, max_delay=0.05)
# Re-publishing a stored decision: quick at first, then every few seconds until Kafka takes it.
PUBLISH_BACKOFF = RetryPolicy(base_delay=0.05, max_delay=5.0)
# While a batch's events wait for Kafka's acks, say so this often (an outage, or a stuck
# producer: the log tells which, as the batch's offsets are not committed meanwhile).
ACK_WAIT_WARNING_SECONDS = 10.0
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
Decided = tuple[Delivery, Decision]
"""A command decided in memory: what to append (a cancel may record nothing), and the event
to send once it is stored."""


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
        publish_backoff: RetryPolicy = PUBLISH_BACKOFF,
        heads_cached: int = HEADS_CACHED,
        recent_entries: int = RECENT_ENTRIES,
        checkpoint: Callable[[KillPoint], None] = lambda _: None,
    ) -> None:
        self._ledger = ledger
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._publish_backoff = publish_backoff
        # The fault switch's kill points (chaos tests crash the process exactly there).
        self._checkpoint = checkpoint
        # Per process (per handler): another worker's appends show up as seq conflicts.
        self._heads = LedgerHeads(ledger, heads_cached)
        self._recent = RecentEntries(ledger, recent_entries)
        self._stripes = [asyncio.Lock() for _ in range(LOCK_STRIPES)]

    async def __call__(self, message: Message) -> None:
        """One command alone: the path :func:`shared.messaging.process_batch` falls back to."""
        await self.handle(message)

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        """Decide a batch: in memory on each resource's head, then one ordered append.

        Requests, cancels and first creations are decided one after another on the head as
        the batch leaves it, and appended together (:meth:`_append_and_announce`). An
        operation this process knows is recorded (decided earlier in the batch, or stored
        lately) is replayed in place: a refused append would send the rest of the batch
        down the one-by-one path. A command that needs more (a creation that records
        nothing, a cancel whose booking is newer than this batch's head) runs alone, after
        the decisions before it are stored, so every resource still sees its commands in
        order.
        """
        decided: list[Decided] = []
        ops: dict[str, LedgerEntry] = {}  # op_key -> entry, as decided in this batch
        heads: dict[UUID, LedgerEntry | None] = {}
        for delivery in deliveries:
            command = delivery.message
            decision: Decision | None = None
            if isinstance(command, RequestBooking | CreateResource | CancelBooking):
                rid = command.resource_id
                if rid not in heads:
                    heads[rid] = await self._heads.head(rid)
                op_key = op_key_for(command)
                recorded = ops.get(op_key) or self._recent.known(op_key)
                if recorded is not None:
                    decision = replay(recorded, command)
                elif isinstance(command, CancelBooking):
                    decision = await self._decide_cancel(heads[rid], command, ops)
                else:
                    decision = decide(heads[rid], command, self._clock())
                    if decision.entry is None:
                        decision = None  # only its pointer tells whether it was decided
            if decision is None:
                await self._append_and_announce(decided)
                decided, ops, heads = [], {}, {}
                with consuming(delivery.record, command):
                    await self.handle(command)
                continue
            if decision.entry is not None:
                heads[decision.entry.resource_id] = decision.entry
                ops[decision.entry.op_key] = decision.entry
            decided.append((delivery, decision))
        await self._append_and_announce(decided)

    async def _decide_cancel(
        self, head: LedgerEntry | None, command: CancelBooking, ops: Mapping[str, LedgerEntry]
    ) -> Decision | None:
        """A cancel decided inside the batch, or None to decide it alone (:meth:`_handle`).

        Issue 19: each cancel used to cut its batch in two (a flush and its acks, then the
        cancel alone with an append and an ack of its own; docs/PERFORMANCE.md). Its booking
        is looked up among the batch's decisions first (a booking cancelled while still
        pending is often decided in the same batch), else through its pointer. A booking
        newer than ``head`` (another worker decided it) or a cancel that may be recorded
        already (:class:`OverRelease`) takes the careful path.
        """
        key = decide_key(command.booking_id)
        booking = ops.get(key) or await self._recent.find(key, command.resource_id, head=_seq(head))
        if booking is not None and booking.seq > _seq(head):
            return None
        try:
            return decide(head, command, self._clock(), booking=booking)
        except OverRelease:
            return None

    async def _append_and_announce(self, decided: Sequence[Decided]) -> None:
        """Store the decisions in one ordered append, then publish their events together.

        Each command keeps a span of its own (its trace runs through booking): the first one's
        holds the append, the others link to it. An event is sent only once its entry is
        stored, and every ack is awaited before the batch's offsets are committed. An entry
        the ledger refused (a seq race with another worker, an operation already decided)
        and every decision after it, whether it records something or not, are decided again
        one by one, which re-reads the head and replays what was decided already.
        """
        if not decided:
            return
        first = decided[0][0]
        acks: list[Awaitable[Any]] = []
        with consuming(first.record, first.message) as span:
            entries = [decision.entry for _, decision in decided if decision.entry is not None]
            stored = await self._ledger.append_many(entries) if entries else 0
            if stored:
                self._checkpoint(KillPoint.AFTER_APPEND)
            standing = _standing(decided, stored)
            if standing:
                acks.extend(await self._conclude(first.message, decided[0][1]))
        link = [Link(span.get_span_context())]
        for delivery, decision in decided[1:standing]:
            with consuming(delivery.record, delivery.message, links=link):
                acks.extend(await self._conclude(delivery.message, decision))
        await _acknowledged(acks)
        for delivery, _ in decided[standing:]:
            with consuming(delivery.record, delivery.message, links=link):
                await self.handle(delivery.message)

    async def _conclude(self, command: Message, decision: Decision) -> list[Awaitable[Any]]:
        """Announce a stored decision, or replay one recorded before (their acks to await),
        or log one that records nothing."""
        op_key = op_key_for(command) if isinstance(command, Command) else None
        if decision.event is None:
            log.info("ignored", op_key=op_key, note=decision.note)
            return []
        if decision.entry is None:
            log.info("replayed", op_key=op_key, event_id=str(decision.event.event_id))
            return [await self._publisher.send(decision.event)]
        return [await self._announce(decision.entry, decision.event)]

    async def _announce(self, entry: LedgerEntry, event: Event) -> Awaitable[Any]:
        self._heads.advance(entry)
        self._recent.remember(entry)
        self._metrics.decided(entry.kind)
        # DEBUG, as the consumer's event_applied: the ledger is the record of every decision,
        # and a line per booking at INFO was 18 % of booking's CPU at 400/s (py-spy).
        log.debug(
            "decided",
            op_key=entry.op_key,
            command_id=str(entry.command_id),
            resource_id=str(entry.resource_id),
            kind=entry.kind.value,
            seq=entry.seq,
            reserved=entry.reserved,
            capacity=entry.capacity,
            reason=entry.reason,
        )
        return await self._publisher.send(event)

    async def handle(self, message: Message) -> Outcome:
        if not isinstance(message, CreateResource | RequestBooking | CancelBooking):
            raise TypeError(f"booking does not handle {type(message).__name__}")
        async with self._stripes[message.resource_id.int % LOCK_STRIPES]:
            return await self._handle(message)

    async def settle(self, message: Message, error: BaseException) -> None:
        """The last resort for a command that kept failing with ``error`` (now in the DLQ).

        A request is decided as rejected with ``processing_failed``: recorded in the ledger
        like any decision (so a replay from the DLQ only re-announces it) and published.
        A creation or a cancel records nothing and waits in the DLQ for an operator.
        """
        if not isinstance(message, CreateResource | RequestBooking | CancelBooking):
            raise TypeError(f"booking does not handle {type(message).__name__}")
        log.warning(
            "settling_failed_command",
            command_id=str(message.command_id),
            type=type(message).__name__,
            error=repr(error)[:500],
        )
        async with self._stripes[message.resource_id.int % LOCK_STRIPES]:
            await self._handle(message, failed=True)

    async def _handle(self, command: Command, *, failed: bool = False) -> Outcome:
        op_key = op_key_for(command)
        bound = log.bind(
            op_key=op_key, command_id=str(command.command_id), resource_id=str(command.resource_id)
        )

        rid = command.resource_id
        head = await self._heads.head(rid)
        booking: LedgerEntry | None = None
        if isinstance(command, CancelBooking) and not failed:
            # The booking's decision, through its pointer (an _id read). It never changes, so
            # one serves all rounds. A cancel decides on a head that includes it: one older
            # (another worker decided the booking) lacks its seats, and releasing them would
            # look corrupt.
            booking = await self._recent.find(decide_key(command.booking_id), rid, head=_seq(head))
            if booking is not None and booking.resource_id == rid:
                head = await self._heads.head(rid, at_least=booking)

        for attempt in range(self._max_attempts):
            try:
                decision = decide(head, command, self._clock(), booking=booking, failed=failed)
            except OverRelease:
                # The state includes the booking, yet holds fewer seats than it: its cancel is
                # recorded already (a redelivery), or the ledger is broken.
                existing = await self._recent.find(op_key, rid, head=_seq(head))
                if existing is None:
                    raise
                return await self._answer(replay(existing, command), bound)
            if decision.entry is None:
                if isinstance(command, CancelBooking) and not failed:
                    # A cancel is recorded only for a confirmed booking of its principal, found
                    # above; this one found none, so nothing can be recorded for it either (the
                    # cancel cliff: this used to look the cancel up, a scan on FerretDB).
                    return await self._answer(decision, bound)
                # Nothing to append, so no index tells whether this very operation was decided
                # (a redelivered CreateResource, a settled cancel): ask its pointer.
                existing = await self._recent.find(op_key, rid, head=_seq(head))
                if existing is not None:
                    return await self._answer(replay(existing, command), bound)
                return await self._answer(decision, bound)
            try:
                await self._ledger.append(decision.entry)
            except AlreadyDecided as exc:
                return await self._answer(replay(exc.existing, command), bound)
            except ConcurrencyConflict as exc:
                bound.debug("seq_conflict", seq=decision.entry.seq, attempt=attempt + 1)
                await asyncio.sleep(self._backoff.delay(attempt))
                head = await self._heads.refresh(rid, exc.current or head)
                continue
            self._checkpoint(KillPoint.AFTER_APPEND)
            self._heads.advance(decision.entry)
            self._recent.remember(decision.entry)
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
                await self._publish_stored(decision.event)
            return Outcome.DECIDED
        raise ContentionError(
            f"{op_key}: lost the ledger race {self._max_attempts} times on resource {rid}"
        )

    async def _answer(self, decision: Decision, bound: BoundLogger) -> Outcome:
        if decision.event is None:
            bound.info("ignored", note=decision.note)
            return Outcome.IGNORED
        await self._publish_stored(decision.event)
        bound.info("replayed", event_id=str(decision.event.event_id), note=decision.note)
        return Outcome.REPLAYED

    async def _publish_stored(self, event: Event) -> None:
        """Publish the event of a stored entry, retrying until Kafka acknowledges it.

        Never given up on: the entry is in the ledger, so dead-lettering its command would
        leave seats taken that no event tells the read model about. A broker that refuses
        it for good (a record too large, say) stalls this partition, and the consumer-lag
        alert says so, which is better than a silent hole. The event is a pure function of
        the stored entry (:func:`booking.domain.event_for`), so every try sends the same bytes.
        """
        attempt = 0
        while True:
            try:
                await self._publisher.publish(event)
                return
            except Exception as exc:
                attempt += 1
                self._metrics.policy.failed(exc)  # shows as handler failures, by error type
                log.warning(
                    "publish_retry", event_id=str(event.event_id), attempt=attempt, error=repr(exc)
                )
                await asyncio.sleep(self._publish_backoff.delay(min(attempt, 10)))


def _standing(decided: Sequence[Decided], stored: int) -> int:
    """How many of the batch's decisions stand: those before the first entry not stored."""
    entries = 0
    for position, (_, decision) in enumerate(decided):
        if decision.entry is not None:
            if entries == stored:
                return position
            entries += 1
    return len(decided)


def _seq(head: LedgerEntry | None) -> int:
    return 0 if head is None else head.seq


async def _acknowledged(acks: Sequence[Awaitable[Any]]) -> None:
    """Wait for every ack, warning every ACK_WAIT_WARNING_SECONDS while some are missing.

    Not bounded: an entry is stored, so its event must reach Kafka (the producer retries it
    until it does), and the batch's offsets wait for that.
    """
    pending = [asyncio.ensure_future(ack) for ack in acks]
    gathered = asyncio.gather(*pending)
    waited = 0.0
    while not (await asyncio.wait({gathered}, timeout=ACK_WAIT_WARNING_SECONDS))[0]:
        waited += ACK_WAIT_WARNING_SECONDS
        missing = sum(not ack.done() for ack in pending)
        log.warning("event_acks_waiting", seconds=waited, missing=missing, batch=len(acks))
    gathered.result()
