"""The gateway's own reading of ``bookify.events``: every process reads every partition.

No consumer group (nothing to commit, no rebalance: each gateway needs all events, for the
streams its own clients hold open). The consumer comes from a broker made by
``shared.kafka.make_broker``, so it connects exactly as every other client of the platform
does (servers, client id, timeouts, security). It starts ``replay_seconds`` back, not at the
end: a decision the consumer has not projected yet must reach the hub's memory of recent
changes (gateway.hub), or a stream opened right after a restart would read ``pending`` from
the view and wait for an event that went by before this process started.

Each live event's lag (its Kafka timestamp to its hand-off) goes to ``lag``; the replayed
ones are left out, as their age is the replay's, not the feed's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import Histogram

from shared.events import EVENT_TYPES, Event, MalformedMessageError, decode
from shared.logging import get_logger

log = get_logger(__name__)

RETRY_SECONDS = 1.0  # between attempts while the broker or the topic is not there
ASSIGNMENT_POLL_SECONDS = 0.05
FETCH_RECORDS = 500
# As the services' subscribers: a fetch of idle partitions held for aiokafka's default 500 ms
# delays the hot one's (docs/PERFORMANCE.md#kafka-fetch-wait, #push-streams).
FETCH_MAX_WAIT_MS = 25


class KafkaEventFeed:
    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topic: str,
        replay_seconds: float,
        lag: Histogram | None = None,
    ) -> None:
        self._broker = broker  # its own: connecting it never touches the publisher's
        self._topic = topic
        self._replay_seconds = replay_seconds
        self._lag = lag
        self._task: asyncio.Task[None] | None = None
        self.positioned = asyncio.Event()  # every partition assigned and sought

    async def start(self, deliver: Callable[[Event], None]) -> None:
        self._task = asyncio.create_task(self._run(deliver), name="push-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        await self._broker.stop()

    async def _run(self, deliver: Callable[[Event], None]) -> None:
        """Read until cancelled, starting over (``replay_seconds`` back) after a failure."""
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                build = await self._broker.connect()
                consumer = build(
                    group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
                )
                await consumer.start()
                await self._position(consumer)
                live_ms = time.time() * 1000  # records stamped before it are replayed
                self.positioned.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
                    for records in batches.values():
                        for record in records:
                            if (event := _decoded(record)) is not None:
                                deliver(event)
                                if self._lag is not None and record.timestamp >= live_ms:
                                    self._lag.observe(time.time() - record.timestamp / 1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: start over once it is back
                log.warning("push_feed_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.positioned.clear()
                with suppress(Exception):
                    if consumer is not None:
                        await consumer.stop()
                    await self._broker.stop()  # a connect that failed leaves clients half-open
            await asyncio.sleep(RETRY_SECONDS)

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        """Take every partition of the topic, each at its first offset since replay.

        Subscribed without a group, aiokafka assigns every partition itself (and any added
        later). Only once the topic exists: asking for it by name would make a broker that
        auto-creates topics create it with its own partition count, not the platform's.
        """
        while self._topic not in await consumer.topics():  # noqa: ASYNC110
            # Created by the gateway once Kafka answers (shared.kafka.ensure_topics).
            await asyncio.sleep(RETRY_SECONDS)
        consumer.subscribe([self._topic])
        while not (partitions := consumer.assignment()):  # noqa: ASYNC110
            await asyncio.sleep(ASSIGNMENT_POLL_SECONDS)  # the next metadata answer assigns
        since_ms = int((time.time() - self._replay_seconds) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        for partition in partitions:
            at = found.get(partition)
            if at is None:  # nothing that recent: from the end
                await consumer.seek_to_end(partition)
            else:
                consumer.seek(partition, at.offset)
        log.info("push_feed_positioned", topic=self._topic, partitions=len(partitions))


def _decoded(record: ConsumerRecord[Any, Any]) -> Event | None:
    headers = {key: value or b"" for key, value in record.headers}
    try:
        event = decode(headers, record.value, EVENT_TYPES)
    except MalformedMessageError as exc:
        # The consumer dead-letters it; push has nothing to show for it.
        log.debug("push_feed_skipped", error=str(exc))
        return None
    assert isinstance(event, Event)
    return event
