"""Group commit: concurrent single-document inserts into one collection, written together.

FerretDB on SQLite has one writer for every service, so what it can serve is counted in
write commands, not documents: one ``insert_many`` of fifty documents costs about what one
``insert_one`` does. :class:`GroupInserter` lets each request insert "its" document and
await "its" outcome, while the documents of every request that arrived meanwhile go out in
one unordered ``insert_many``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from contextvars import Context, copy_context
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from gateway.ports import DependencyUnavailableError
from shared.logging import get_logger
from shared.mongo import Document, is_duplicate_key

log = get_logger(__name__)


class InsertManyTarget(Protocol):
    """The part of ``AsyncCollection`` the buffer uses (a fake in unit tests)."""

    async def insert_many(self, documents: list[Document], *, ordered: bool) -> object: ...


@dataclass(frozen=True)
class _Waiting:
    doc: Document
    outcome: asyncio.Future[None]
    context: Context = field(default_factory=copy_context)  # the caller's trace context


class GroupInserter:
    """Coalesces concurrent inserts into one collection into unordered ``insert_many`` calls.

    A flush starts ``max_delay`` seconds after a document reaches an idle buffer, or at once
    when ``max_batch`` are waiting. One flush is in flight at a time: what arrives meanwhile
    is the next batch, so batches grow with the load and the store sees one writer per
    collection from this process instead of one per request.

    Each caller gets its own document's outcome: a duplicate ``_id`` raises
    ``DuplicateKeyError`` in that caller only (``ordered=False`` writes the others); an
    outage raises :class:`DependencyUnavailableError` in every caller waiting.
    """

    def __init__(
        self, target: InsertManyTarget, *, max_batch: int = 256, max_delay: float = 0.001
    ) -> None:
        if max_batch < 1 or max_delay < 0:
            raise ValueError("max_batch must be >= 1 and max_delay >= 0")
        self._target = target
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._waiting: list[_Waiting] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def insert(self, doc: Document) -> None:
        """Return once ``doc`` is stored; raise what storing it raised."""
        if self._closed:
            raise DependencyUnavailableError("mongodb", "store closed")
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(doc, outcome))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_waiting())
        elif len(self._waiting) >= self._max_batch:
            self._full.set()
        # A caller that gives up (cancelled) does not take its document back: it may be
        # needed (an accepted record after the Kafka ack), and the write is harmless anyway.
        await outcome

    async def close(self) -> None:
        """Write what is waiting, then refuse new documents."""
        self._closed = True
        self._full.set()  # no need to wait out the delay
        if self._flusher is not None:
            await self._flusher

    async def _flush_while_waiting(self) -> None:
        try:
            if len(self._waiting) < self._max_batch:
                # Let the rest of this burst join the first batch.
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._max_delay):
                        await self._full.wait()
            while self._waiting:
                self._full.clear()
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                # The batch's insert is traced in the span of its first request, as booking's
                # batched ledger write is (DESIGN.md section 5), not in whichever request
                # happened to start this task.
                try:
                    await asyncio.create_task(self._write(batch), context=batch[0].context)
                except Exception:  # its callers have their answer; the next batch goes on
                    log.exception("group insert could not route its outcome", waiting=len(batch))
        except asyncio.CancelledError:
            # The loop is going down: nobody may wait for a flush that will never come.
            self._fail_waiting("insert interrupted")
            raise
        finally:
            self._flusher = None

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            await self._target.insert_many([w.doc for w in batch], ordered=False)
        except BulkWriteError as exc:
            self._route(batch, exc.details)
        except PyMongoError as exc:
            # The store is unreachable: what waits behind this batch would only wait out the
            # same timeout, so it fails now too (503) and the clients retry.
            log.warning("group insert failed", error=type(exc).__name__, waiting=len(batch))
            for w in batch:
                _fail(w.outcome, _unavailable(type(exc).__name__))
            self._fail_waiting(type(exc).__name__)
        except Exception as exc:
            # A bug, not an outage (say a value BSON cannot encode): this batch's callers
            # get it as it is, and the buffer goes on with the next batch.
            log.exception("group insert raised", waiting=len(batch))
            for w in batch:
                _fail(w.outcome, exc)
        else:
            for w in batch:
                _succeed(w.outcome)
        finally:
            # Whatever happened above (cancelled included), no caller waits on forever.
            for w in batch:
                _fail(w.outcome, _unavailable("insert interrupted"))

    def _fail_waiting(self, detail: str) -> None:
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            _fail(w.outcome, _unavailable(detail))

    @staticmethod
    def _route(batch: list[_Waiting], details: Mapping[str, Any]) -> None:
        """Hand each write error to the caller whose document it names (by batch index)."""
        failed: dict[int, BaseException] = {}
        for error in details.get("writeErrors", []):
            if is_duplicate_key(error):
                failed[error["index"]] = DuplicateKeyError(
                    error.get("errmsg", ""), error["code"], error
                )
            else:  # as a lone insert's WriteError would be: not the client's fault
                failed[error["index"]] = _unavailable("WriteError")
        # Written, but not as durably as asked: as insert_one's WriteConcernError, a 503.
        unsure = bool(details.get("writeConcernErrors"))
        for index, w in enumerate(batch):
            if index in failed:
                _fail(w.outcome, failed[index])
            elif unsure:
                _fail(w.outcome, _unavailable("WriteConcernError"))
            else:
                _succeed(w.outcome)


def _unavailable(detail: str) -> DependencyUnavailableError:
    # One exception per caller: each request raises (and annotates) its own.
    return DependencyUnavailableError("mongodb", detail)


def _succeed(outcome: asyncio.Future[None]) -> None:
    if not outcome.done():  # its caller may have been cancelled
        outcome.set_result(None)


def _fail(outcome: asyncio.Future[None], exc: BaseException) -> None:
    if not outcome.done():
        outcome.set_exception(exc)


@dataclass(frozen=True)
class GroupCommit:
    """How a store batches its inserts: the settings of its :class:`GroupInserter`."""

    max_docs: int = 256
    delay_seconds: float = 0.001

    def inserter(self, target: InsertManyTarget) -> GroupInserter:
        return GroupInserter(target, max_batch=self.max_docs, max_delay=self.delay_seconds)
