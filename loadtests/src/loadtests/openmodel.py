"""An open-model (arrival-rate) load generator that does not suffer coordinated omission.

Requests start on a fixed schedule whether or not earlier ones have answered, into a bounded
pool; an arrival that finds the pool full is counted as dropped, not delayed. Latency is
measured from the *intended* start time, so a stalled server shows up as latency instead of
silently lowering the offered load (Gil Tene's "coordinated omission"). Locust's users are a
closed model and its response-time buckets are rounded, hence this module and HdrHistogram.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

# Microseconds, 1 µs .. 10 min at 3 significant digits.
LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass
class OpenModelResult:
    rate: float
    duration: float
    intended: int = 0
    completed: int = 0
    dropped: int = 0
    failed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency_us: HdrHistogram = field(default_factory=new_histogram)
    schedule_lag_us: HdrHistogram = field(default_factory=new_histogram)
    elapsed: float = 0.0

    def percentile_ms(self, histogram: HdrHistogram, p: float) -> float:
        return float(histogram.get_value_at_percentile(p)) / 1000.0

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


async def run_open_model(
    send: Callable[[int], Awaitable[int]],
    *,
    rate: float,
    duration: float,
    max_in_flight: int = 512,
) -> OpenModelResult:
    """Call ``send(i)`` ``rate`` times a second for ``duration`` seconds; ``send`` returns a status.

    A ``send`` that raises counts as failed (status 0). Waits for in-flight requests at the end.
    """
    result = OpenModelResult(rate=rate, duration=duration)
    total = int(rate * duration)
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int, intended: float) -> None:
        status = 0
        try:
            status = await send(i)
        except Exception:
            result.failed += 1
        result.statuses[status] += 1
        result.completed += 1
        result.latency_us.record_value(max(1, int((loop.time() - intended) * 1e6)))

    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        result.intended += 1
        result.schedule_lag_us.record_value(max(1, int((loop.time() - intended) * 1e6)))
        if len(in_flight) >= max_in_flight:
            result.dropped += 1
            continue
        task = asyncio.create_task(one(i, intended))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
    result.elapsed = loop.time() - start
    return result
