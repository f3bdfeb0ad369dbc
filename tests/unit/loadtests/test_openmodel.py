from __future__ import annotations

import asyncio
import time

from loadtests.openmodel import run_open_model


async def test_every_scheduled_arrival_is_sent_and_answered() -> None:
    async def send(_: int) -> int:
        return 202

    result = await run_open_model(send, rate=200, duration=0.5)
    assert (result.intended, result.completed, result.dropped) == (100, 100, 0)
    assert result.statuses == {202: 100}


async def test_a_stalled_request_does_not_hold_back_the_ones_after_it() -> None:
    async def send(i: int) -> int:
        await asyncio.sleep(0.3 if i == 0 else 0)
        return 200

    result = await run_open_model(send, rate=100, duration=0.5)
    assert result.completed == 50
    assert result.percentile_ms(result.latency_us, 100) >= 300
    assert result.percentile_ms(result.latency_us, 50) < 50


async def test_latency_counts_from_the_intended_start_not_the_actual_one() -> None:
    # The first send blocks the whole event loop for 100 ms (a stalled generator): the
    # arrivals due meanwhile start late, and that lateness is charged to their latency.
    async def send(i: int) -> int:
        if i == 0:
            time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is the point
        return 200

    result = await run_open_model(send, rate=100, duration=2)
    assert result.completed == 200
    assert result.percentile_ms(result.latency_us, 90) < 20
    assert result.percentile_ms(result.latency_us, 99) >= 80
    assert result.percentile_ms(result.schedule_lag_us, 100) >= 80


async def test_arrivals_that_find_the_pool_full_are_dropped_not_delayed() -> None:
    async def send(_: int) -> int:
        await asyncio.sleep(0.04)
        return 200

    result = await run_open_model(send, rate=100, duration=0.5, max_in_flight=1)
    assert result.intended == 50
    assert result.dropped > 25
    assert result.completed + result.dropped == result.intended


async def test_a_send_that_raises_counts_as_failed() -> None:
    async def send(i: int) -> int:
        if i % 2:
            raise ConnectionError("refused")
        return 202

    result = await run_open_model(send, rate=100, duration=0.2)
    assert result.failed == 10
    assert result.statuses == {202: 10, 0: 10}
