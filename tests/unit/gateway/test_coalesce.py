"""Coalescer: concurrent callers' items sent together, each caller getting its own outcome
(gateway.coalesce; its two users have tests of their own: test_group_commit, test_ratelimit)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.coalesce import Coalescer, OutageError

LONG = 60.0  # a delay no test waits out: a flush that happens came from something else


class UnavailableError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Echo:
    """Answers each item doubled; an odd item is refused (that caller only). Can hold a batch
    until released, and fail the next batch with ``fail_with`` (once)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail_with: Exception | None = None

    async def send(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        failure, self.fail_with = self.fail_with, None
        if failure is not None:
            raise failure
        return [ValueError(f"odd {i}") if i % 2 else 2 * i for i in items]


def coalescer(echo: Echo, *, max_batch: int = 100, max_delay: float = 0) -> Coalescer[int, int]:
    return Coalescer(
        echo.send, max_batch=max_batch, max_delay=max_delay, unavailable=UnavailableError
    )


async def settle() -> None:
    for _ in range(5):  # let started tasks reach their awaits
        await asyncio.sleep(0)


async def submit_all(batcher: Coalescer[int, int], *items: int) -> list[int | BaseException]:
    return await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)


async def test_items_submitted_together_go_out_in_one_call_in_arrival_order() -> None:
    echo = Echo()

    outcomes = await submit_all(coalescer(echo), 4, 0, 2, 8)

    assert echo.batches == [[4, 0, 2, 8]]
    assert outcomes == [8, 0, 4, 16]  # each caller its own item's answer


async def test_no_batch_holds_more_than_max_batch() -> None:
    echo = Echo()

    outcomes = await submit_all(coalescer(echo, max_batch=2, max_delay=LONG), 0, 2, 4, 6, 8)

    assert outcomes == [0, 4, 8, 12, 16]
    assert echo.batches == [[0, 2], [4, 6], [8]]  # full batches did not wait out the delay


async def test_what_arrives_during_a_send_goes_out_together_in_the_next_one() -> None:
    echo = Echo(hold=True)
    batcher = coalescer(echo)
    first = asyncio.create_task(batcher.submit(0))
    await settle()
    rest = asyncio.gather(*(batcher.submit(i) for i in (2, 4, 6)))
    await settle()
    in_flight = len(echo.batches)
    echo.release.set()

    assert (await first, await rest) == (0, [4, 8, 12])
    assert in_flight == 1  # one send at a time
    assert echo.batches == [[0], [2, 4, 6]]


async def test_an_exception_answered_for_one_item_reaches_that_caller_only() -> None:
    outcomes = await submit_all(coalescer(Echo()), 2, 3, 4)

    assert outcomes[0::2] == [4, 8]
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[1]) == "odd 3"


async def send_held_batch_with_one_behind(
    failure: Exception, in_flight: list[int], behind: list[int]
) -> tuple[list[int | BaseException], list[int | BaseException], Echo]:
    """``in_flight`` sent and held, ``behind`` waiting for the next batch, then the held send
    raises ``failure``: each group's outcomes."""
    echo = Echo(hold=True)
    echo.fail_with = failure
    batcher = coalescer(echo)
    sent = asyncio.gather(*map(batcher.submit, in_flight), return_exceptions=True)
    await settle()
    waiting = asyncio.gather(*map(batcher.submit, behind), return_exceptions=True)
    await settle()
    echo.release.set()
    return await sent, await waiting, echo


async def test_a_send_that_raises_fails_its_batch_and_the_next_batch_goes_on() -> None:
    broken, after, _ = await send_held_batch_with_one_behind(TypeError("a bug"), [0, 2], [4])

    assert [type(o) for o in broken] == [TypeError, TypeError]
    assert after == [8]


async def test_an_outage_fails_every_waiter_each_with_its_own_exception() -> None:
    in_flight, behind, echo = await send_held_batch_with_one_behind(
        OutageError("ConnectionRefused"), [0, 2], [4, 6]
    )
    outcomes = [*in_flight, *behind]

    assert all(isinstance(o, UnavailableError) for o in outcomes)
    assert {o.detail for o in outcomes if isinstance(o, UnavailableError)} == {"ConnectionRefused"}
    assert len({id(o) for o in outcomes}) == 4  # each caller raises (and annotates) its own
    assert len(echo.batches) == 1  # those behind were not sent into the same outage


async def test_a_cancelled_waiter_still_has_its_item_sent_and_others_get_theirs() -> None:
    echo = Echo()
    batcher = coalescer(echo, max_delay=0.05)
    gone = asyncio.create_task(batcher.submit(2))
    stays = asyncio.create_task(batcher.submit(4))
    await settle()

    gone.cancel()

    assert await stays == 8
    assert gone.cancelled()
    assert echo.batches == [[2, 4]]


async def test_close_sends_what_is_waiting_then_refuses_items() -> None:
    echo = Echo()
    batcher = coalescer(echo, max_delay=LONG)
    waiting = asyncio.gather(batcher.submit(0), batcher.submit(2))
    await settle()

    async with asyncio.timeout(2):
        await batcher.close()

    assert await waiting == [0, 4]
    with pytest.raises(UnavailableError, match="closed"):
        await batcher.submit(4)


async def test_abort_fails_the_batch_in_flight_and_those_behind_it() -> None:
    echo = Echo(hold=True)
    batcher = coalescer(echo)
    in_flight = asyncio.gather(batcher.submit(0), return_exceptions=True)
    await settle()
    behind = asyncio.gather(batcher.submit(2), return_exceptions=True)
    await settle()

    async with asyncio.timeout(2):
        await batcher.abort()

    outcomes = [*await in_flight, *await behind]
    assert [(type(o), str(o)) for o in outcomes] == [(UnavailableError, "interrupted")] * 2
    with pytest.raises(UnavailableError, match="closed"):
        await batcher.submit(4)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_delay"):
        coalescer(Echo(), max_delay=-1)
