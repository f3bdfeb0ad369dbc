"""bookify bench push's own parts: the bookings its streams carried, and the figures' ratios."""

from __future__ import annotations

import asyncio
from typing import Any

from bookify_bench.push import (
    DeliveryFigures,
    HeldLevel,
    PushFigures,
    bucket_bound,
    percentile,
    push_report,
    read_bookings,
)
from loadtests.sse import EventStream


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


class NoWriter:
    def close(self) -> None:
        pass


async def test_a_stream_records_each_booking_once_across_chunk_boundaries() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(
        chunked(
            b": heartbeat\n\n",
            b"event: booking\nid: b-1:confir",  # an event split over two chunks
            b"med\ndata: {}\n\nevent: booking\nid: b-2:rejected\ndata: {}\n\n",
            b"event: booking\nid: b-1:cancelled\ndata: {}\n\n",  # b-1 was read already
        )
    )
    reader.feed_eof()
    writer: Any = NoWriter()
    seen: dict[str, float] = {}

    await read_bookings(EventStream(reader, writer), seen)

    assert list(seen) == ["b-1", "b-2"]


def test_figures_are_given_as_ratios_of_the_aims() -> None:
    held = HeldLevel(streams=1000, refused=0, rss_mib=160, kib_per_stream=75, idle_cores=0.02)
    delivery = DeliveryFigures(
        5000, 400, 20, 8000, 8000, 8000, 20.0, 150.0, 300.0, {"gateway": 0.8, "booking": 0.5},
        feed_p50_s=0.01, feed_p99_s=0.1,
    )  # fmt: skip
    figures = PushFigures(110, 15, 30, [held], delivery)

    assert held.memory_ratio == 1.5
    assert delivery.p99_ratio == 1.5
    assert figures.as_dict()["held"][0]["memory_ratio"] == 1.5
    text = push_report(figures)
    assert "1.50 x the 100 ms aim" in text
    assert "cores busy meanwhile: gateway 0.80, booking 0.50" in text
    assert "the gateway's feed: p50 <= 10 ms, p99 <= 100 ms" in text
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 100.0
    assert percentile([], 0.99) is None


def test_a_quantile_of_a_histogram_is_the_bound_of_the_bucket_that_holds_it() -> None:
    buckets = [(0.01, 50.0), (0.1, 98.0), (1.0, 100.0), (float("inf"), 100.0)]

    assert bucket_bound(buckets, 0.5) == 0.01
    assert bucket_bound(buckets, 0.9) == 0.1
    assert bucket_bound(buckets, 0.99) == 1.0
    assert bucket_bound([(0.01, 0.0), (float("inf"), 0.0)], 0.99) is None
    assert bucket_bound([], 0.5) is None
