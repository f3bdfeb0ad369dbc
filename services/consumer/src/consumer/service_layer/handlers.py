"""Apply events: views (the principals' lists of bookings last), then notifications, then
mark them processed and measure them.

A batch (:meth:`EventHandler.many`) does each step once for all its events: the resource
and booking changes folded per resource and per booking by the domain's own rules, each
step one bulk write. One event alone (the fallback path) takes the same steps by itself.

The order is what makes a crash anywhere harmless. Each step is idempotent and guarded
(see the adapter), and the event is marked processed only after every view write, so an
event interrupted halfway is simply applied again on redelivery. Marking is also the
dedupe point for the metrics: only the delivery that inserts the mark observes the
end-to-end latency, so each event is measured exactly once even when two consumers
briefly share a partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from cachetools import LRUCache
from opentelemetry import trace
from opentelemetry.trace import Link

from consumer.domain import (
    coalesce_bookings,
    coalesce_changes,
    notification_for,
    project,
)
from consumer.metrics import ConsumerMetrics
from consumer.ports import ViewRepository
from shared.events import Event, Message, utcnow
from shared.faults import KillPoint
from shared.logging import get_logger
from shared.messaging import Delivery, consuming

log = get_logger(__name__)

NAMES_CACHED = 10_000


class EventHandler:
    def __init__(
        self,
        views: ViewRepository,
        metrics: ConsumerMetrics,
        *,
        clock: Callable[[], datetime] = utcnow,
        checkpoint: Callable[[KillPoint], None] = lambda _: None,
    ) -> None:
        self._views = views
        self._metrics = metrics
        self._clock = clock
        self._checkpoint = checkpoint  # the fault switch's kill points (chaos tests)
        # Resource names for notifications: fixed once given, so a cache is never stale.
        self._names: LRUCache[str, str] = LRUCache(NAMES_CACHED)

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        """A batch in a handful of bulk writes, whatever its size.

        Every event keeps a span of its own (its trace runs through here) in which it is
        measured; the writes are in the first event's span, which the others link to.
        """
        events = [d.message for d in deliveries if isinstance(d.message, Event)]
        if len(events) < len(deliveries):
            raise TypeError("the read side handles events only")  # then one by one: DLQ
        now = self._clock()
        projections = [project(e, now) for e in events]
        first = deliveries[0]
        changes = coalesce_changes([p.resource for p in projections if p.resource])
        for change in changes:
            if change.details is not None:
                self._names[change.resource_id] = change.details.name
        with consuming(first.record, first.message) as span:
            await self._views.apply_resources(changes)
            self._checkpoint(KillPoint.MID_BATCH)
            bookings = coalesce_bookings([p.booking for p in projections if p.booking])
            await self._views.apply_bookings(bookings)
            await self._views.list_bookings(bookings)
            await self._views.add_notifications(
                [
                    notification_for(
                        p.booking,
                        event_id=str(e.message_id),
                        resource_name=await self._name_of(p.booking.resource_id),
                        now=now,
                    )
                    for e, p in zip(events, projections, strict=True)
                    if p.booking is not None
                ]
            )
            visible_at = self._clock()
            marked = await self._views.mark_processed_many(
                [(str(e.message_id), e.ce_type) for e in events], visible_at
            )
            self._measure(first.message, marked, visible_at)
        link = [Link(span.get_span_context())]
        for delivery in deliveries[1:]:
            with consuming(delivery.record, delivery.message, links=link):
                self._measure(delivery.message, marked, visible_at)

    async def _name_of(self, resource_id: str) -> str | None:
        """The resource's name for a notification: known already, else as stored."""
        if (name := self._names.get(resource_id)) is None:
            resource = await self._views.get_resource(resource_id)
            name = resource.name if resource else None
            if name is not None:
                self._names[resource_id] = name
        return name

    def _measure(self, message: Message, marked: set[str], visible_at: datetime) -> None:
        kind = type(message).__name__
        if str(message.message_id) not in marked:
            self._count(kind, "duplicate")  # applied again harmlessly; measured once, before
            return
        if isinstance(message, Event):
            self._observe_e2e(message, visible_at)
        self._count(kind, "applied")

    async def __call__(self, message: Message) -> None:
        if not isinstance(message, Event):
            # The subscriber decodes with EVENT_TYPES only; a command here is a wiring bug.
            raise TypeError(f"the read side handles events, not {type(message).__name__}")
        event_id = str(message.event_id)
        kind = type(message).__name__
        if await self._views.is_processed(event_id):
            self._count(kind, "duplicate")
            return

        now = self._clock()
        projection = project(message, now)
        if projection.resource is not None:
            await self._views.apply_resource(projection.resource)
        if projection.booking is not None:
            booking = projection.booking
            await self._views.apply_booking(booking)
            await self._views.list_bookings([booking])
            resource = await self._views.get_resource(booking.resource_id)
            await self._views.add_notification(
                notification_for(
                    booking,
                    event_id=event_id,
                    resource_name=resource.name if resource else None,
                    now=now,
                )
            )

        visible_at = self._clock()
        if not await self._views.mark_processed(event_id, message.ce_type, visible_at):
            self._count(kind, "duplicate")  # another consumer finished it first
            return
        self._observe_e2e(message, visible_at)
        self._count(kind, "applied")
        log.debug("event_applied", event_id=event_id, type=kind)

    async def settle(self, message: Message, error: BaseException) -> None:
        """An event the views kept failing on stays in the DLQ, never dropped.

        The views cannot decide anything in its place (booking owns the decisions), so
        the dead letter is kept for ``bookify dlq replay``: projecting is idempotent and
        guarded by version, so a replay applies it once, even after newer events.
        """
        log.error(
            "event_left_in_dlq",
            event_id=str(message.message_id),
            type=type(message).__name__,
            error=repr(error)[:500],
        )

    def _observe_e2e(self, event: Event, visible_at: datetime) -> None:
        # Clocks of different hosts can disagree by a little; never observe a negative time.
        seconds = max(0.0, (visible_at - event.accepted_at).total_seconds())
        self._metrics.e2e_seconds.observe(seconds, exemplar=_trace_exemplar())

    def _count(self, kind: str, outcome: str) -> None:
        self._metrics.events.labels(type=kind, outcome=outcome).inc()


def _trace_exemplar() -> dict[str, str] | None:
    """Links the histogram bucket to the trace, when there is a sampled one to link to."""
    ctx = trace.get_current_span().get_span_context()
    if not (ctx.is_valid and ctx.trace_flags.sampled):
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}
