"""Group commit: concurrent single-document inserts into one collection, written together.

FerretDB on SQLite has one writer for every service, so what it can serve is counted in
write commands, not documents: one ``insert_many`` of fifty documents costs about what one
``insert_one`` does. :class:`GroupInserter` lets each request insert "its" document and
await "its" outcome, while the documents of every request that arrived meanwhile go out in
one unordered ``insert_many``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from gateway.coalesce import Coalescer, OutageError
from gateway.ports import DependencyUnavailableError
from shared.logging import get_logger
from shared.mongo import Document, is_duplicate_key

log = get_logger(__name__)


class InsertManyTarget(Protocol):
    """The part of ``AsyncCollection`` the buffer uses (a fake in unit tests)."""

    async def insert_many(self, documents: list[Document], *, ordered: bool) -> object: ...


class GroupInserter:
    """Coalesces concurrent inserts into one collection into unordered ``insert_many`` calls
    (a :class:`~gateway.coalesce.Coalescer`: at most ``max_batch`` documents, ``max_delay``
    to gather them, one flush in flight), so the store sees one writer per collection from
    this process instead of one per request.

    Each caller gets its own document's outcome: a duplicate ``_id`` raises
    ``DuplicateKeyError`` in that caller only (``ordered=False`` writes the others); an
    outage raises :class:`DependencyUnavailableError` in every caller waiting.
    """

    def __init__(
        self, target: InsertManyTarget, *, max_batch: int = 256, max_delay: float = 0.001
    ) -> None:
        self._target = target
        self._batcher: Coalescer[Document, None] = Coalescer(
            self._write, max_batch=max_batch, max_delay=max_delay, unavailable=_unavailable
        )

    async def insert(self, doc: Document) -> None:
        """Return once ``doc`` is stored; raise what storing it raised."""
        # A caller that gives up (cancelled) does not take its document back: it may be
        # needed (an accepted record after the Kafka ack), and the write is harmless anyway.
        await self._batcher.submit(doc)

    async def close(self) -> None:
        """Write what is waiting, then refuse new documents."""
        await self._batcher.close()

    async def _write(self, docs: list[Document]) -> list[BaseException | None]:
        try:
            await self._target.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            return _outcomes(len(docs), exc.details)
        except PyMongoError as exc:
            # The store is unreachable: what waits behind this batch would only wait out the
            # same timeout, so it fails now too (503) and the clients retry.
            log.warning("group insert failed", error=type(exc).__name__, waiting=len(docs))
            raise OutageError(type(exc).__name__) from exc
        except Exception:
            # A bug, not an outage (say a value BSON cannot encode): this batch's callers
            # get it as it is, and the buffer goes on with the next batch.
            log.exception("group insert raised", waiting=len(docs))
            raise
        return [None] * len(docs)


def _outcomes(size: int, details: Mapping[str, Any]) -> list[BaseException | None]:
    """Each document's outcome: a write error goes to the caller whose document it names."""
    failed: dict[int, BaseException] = {}
    for error in details.get("writeErrors", []):
        if is_duplicate_key(error):
            duplicate = DuplicateKeyError(error.get("errmsg", ""), error["code"], error)
            failed[error["index"]] = duplicate
        else:  # as a lone insert's WriteError would be: not the client's fault
            failed[error["index"]] = _unavailable("WriteError")
    # Written, but not as durably as asked: as insert_one's WriteConcernError, a 503.
    unsure = bool(details.get("writeConcernErrors"))
    return [
        failed[index] if index in failed else _unavailable("WriteConcernError") if unsure else None
        for index in range(size)
    ]


def _unavailable(detail: str) -> DependencyUnavailableError:
    # One exception per caller: each request raises (and annotates) its own.
    return DependencyUnavailableError("mongodb", detail)


@dataclass(frozen=True)
class GroupCommit:
    """How a store batches its inserts: the settings of its :class:`GroupInserter`."""

    max_docs: int = 256
    delay_seconds: float = 0.001

    def inserter(self, target: InsertManyTarget) -> GroupInserter:
        return GroupInserter(target, max_batch=self.max_docs, max_delay=self.delay_seconds)
