"""Coalescing: each concurrent caller submits one item and awaits its own outcome, while the
items that arrived meanwhile go out together in one call.

The gateway's two batched round trips are this: the group commit's ``insert_many``
(gateway.adapters.group_commit) and the shared rate limit's script call
(gateway.ratelimit.shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from contextvars import Context, copy_context
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.logging import get_logger

log = get_logger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class OutageError(Exception):
    """Raised by a batch's ``send`` when its dependency is down: what waits behind the batch
    would only meet the same failure, so every waiter fails now."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[ItemT, ResultT]):
    item: ItemT
    outcome: asyncio.Future[ResultT]
    context: Context  # the caller's, so its trace goes on in the batch it starts


class Coalescer(Generic[ItemT, ResultT]):
    """Sends the items of concurrent callers in batches of at most ``max_batch``.

    A flush starts ``max_delay`` seconds after an item reaches an idle batcher (at once when
    ``max_batch`` are waiting; on the next loop turn when ``max_delay`` is 0). One flush is in
    flight at a time: what arrives meanwhile is the next batch, so batches grow with the load.

    ``send`` gets the items in arrival order and answers one outcome per item, a value or an
    exception for that caller alone. If it raises :class:`OutageError`, this batch and every item
    waiting behind it fail, each caller with its own ``unavailable(detail)``; if it raises
    anything else, this batch's callers get that and the next batch goes on. A caller that is
    cancelled does not take its item back: it is sent anyway.
    """

    def __init__(
        self,
        send: Callable[[list[ItemT]], Awaitable[Sequence[ResultT | BaseException]]],
        *,
        max_batch: int,
        max_delay: float,
        unavailable: Callable[[str], Exception],
    ) -> None:
        if max_batch < 1 or max_delay < 0:
            raise ValueError("max_batch must be >= 1 and max_delay >= 0")
        self._send = send
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._unavailable = unavailable
        self._waiting: list[_Waiting[ItemT, ResultT]] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: ItemT) -> ResultT:
        """Return ``item``'s outcome once its batch is back; raise its exception."""
        if self._closed:
            raise self._unavailable("closed")
        outcome: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, outcome, copy_context()))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_waiting())
        elif len(self._waiting) >= self._max_batch:
            self._full.set()
        return await outcome

    async def close(self) -> None:
        """Send what is waiting, then refuse new items."""
        self._closed = True
        self._full.set()  # no need to wait out the delay
        if self._flusher is not None:
            await self._flusher

    async def abort(self) -> None:
        """Stop the flush in flight and refuse new items; every waiter fails."""
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher

    async def _flush_while_waiting(self) -> None:
        try:
            if self._max_delay > 0 and len(self._waiting) < self._max_batch:
                # Let the rest of this burst join the first batch.
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._max_delay):
                        await self._full.wait()
            first = True
            while self._waiting:
                self._full.clear()
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                # A batch is traced in the context of its first caller (as booking's batched
                # ledger write is, DESIGN.md section 5), not of whichever started this task:
                # the first batch's first caller did, so only later batches need a task.
                sending = self._send_batch(batch)
                try:
                    if first:
                        await sending
                    else:
                        await asyncio.create_task(sending, context=batch[0].context)
                except Exception:  # its callers have their answer; the next batch goes on
                    log.exception("coalesced batch could not route its outcome", size=len(batch))
                first = False
        except asyncio.CancelledError:
            # Going down: nobody may wait for a flush that will never come.
            self._fail_waiting("interrupted")
            raise
        finally:
            self._flusher = None

    async def _send_batch(self, batch: list[_Waiting[ItemT, ResultT]]) -> None:
        try:
            outcomes = await self._send([w.item for w in batch])
        except OutageError as exc:
            for w in batch:
                _fail(w.outcome, self._unavailable(exc.detail))
            self._fail_waiting(exc.detail)
        except Exception as exc:
            for w in batch:
                _fail(w.outcome, exc)
        else:
            for w, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    _fail(w.outcome, outcome)
                elif not w.outcome.done():  # its caller may have been cancelled
                    w.outcome.set_result(outcome)
        finally:
            # Whatever happened above (cancelled included), no caller waits on forever.
            for w in batch:
                if not w.outcome.done():
                    w.outcome.set_exception(self._unavailable("interrupted"))

    def _fail_waiting(self, detail: str) -> None:
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            _fail(w.outcome, self._unavailable(detail))


def _fail(outcome: asyncio.Future[ResultT], exc: BaseException) -> None:
    if not outcome.done():
        outcome.set_exception(exc)
