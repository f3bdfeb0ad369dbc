"""Apply one event: views, then notification, then mark it processed and measure it.

The order is what makes a crash anywhere harmless. Each step is idempotent and guarded
(see the adapter), and the event is marked processed only after every view write, so an
event interrupted halfway is simply applied again on redelivery. Marking is also the
dedupe point for the metrics: only the delivery that inserts the mark observes the
end-to-end latency, so each event is measured exactly once even when two consumers
briefly share a partition.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from opentelemetry import trace

from consumer.adapters import ViewRepository
from consumer.domain import notification_for, project
from consumer.metrics import ConsumerMetrics
from shared.events import Event, Message, utcnow
from shared.logging import get_logger

log = get_logger(__name__)


class EventHandler:
    def __init__(
        self,
        views: ViewRepository,
        metrics: ConsumerMetrics,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._views = views
        self._metrics = metrics
        self._clock = clock

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
