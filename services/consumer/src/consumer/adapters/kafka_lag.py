"""Consumer lag per partition, sampled from the group's own aiokafka consumer.

Lag = high watermark - position: records on the broker this group has not yet handed
to the handler. aiokafka learns the high watermark from fetch responses, so a partition
shows up once it has been fetched from; partitions this process no longer owns after a
rebalance are removed, so two processes never both report the same partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

from shared.logging import get_logger

log = get_logger(__name__)


class LagSampler:
    def __init__(self, gauge: Gauge, group: str, consumer: Callable[[], Any]) -> None:
        self._gauge = gauge
        self._group = group
        self._consumer = consumer  # the subscriber's AIOKafkaConsumer, None until started
        self._reported: set[tuple[str, str, str]] = set()

    async def sample(self) -> None:
        consumer = self._consumer()
        current: set[tuple[str, str, str]] = set()
        if consumer is not None:
            for tp in list(consumer.assignment()):
                # The assignment can change under us (rebalance): skip that partition this time.
                with contextlib.suppress(Exception):
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
                    labels = (self._group, tp.topic, str(tp.partition))
                    self._gauge.labels(*labels).set(max(0, highwater - position))
                    current.add(labels)
        for gone in self._reported - current:
            with contextlib.suppress(KeyError):
                self._gauge.remove(*gone)
        self._reported = current

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # a metric must never take the consumer down
                log.warning("lag_sample_failed", error=repr(exc))
            await asyncio.sleep(interval)
