"""Bounded storage: documents that are only useful for a while expire.

Idempotency keys, accepted records, processed-event markers and notifications would
otherwise grow without bound (the ledger and its pointers are kept: they are the record).
Each collection names the BSON date field its age is measured by. On MongoDB a TTL index
expires them; FerretDB v1 has no TTL indexes (it answers "not implemented"), so there a
periodic sweep deletes what is older. Which of the two applies is found out by asking for
the TTL index, not by guessing the server; a TTL index made for another retention is changed
to the new one (``collMod``).

On FerretDB v1 a sweep reads the whole collection: it pushes no date comparison down to
SQLite, and every write waits on a busier store meanwhile (see
docs/PERFORMANCE.md#retention-sweeps-on-ferretdb). So sweeps are hourly by default
(``retention_sweep_seconds``; a document then lives at most an hour past its retention), and
the first comes one interval after start, not while a service starts up and takes its first
load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from shared.events import utcnow
from shared.logging import get_logger
from shared.mongo import Document

log = get_logger(__name__)


@dataclass(frozen=True)
class Retained:
    """Documents of ``collection`` are kept ``seconds`` after their ``field`` (a date)."""

    collection: AsyncCollection[Document]
    field: str
    seconds: float


# MongoDB's answer to create_index when an index of that name exists with other options:
# here, the TTL index of an earlier retention_seconds.
INDEX_OPTIONS_CONFLICT = 85


async def expire_by_index(retained: Retained) -> bool:
    """A TTL index for ``retained``; False where the server has none (FerretDB v1).

    An existing TTL index with another expiry (``retention_seconds`` changed) is changed to
    this one (:func:`change_expiry`). Any other failure (the server not reachable yet)
    raises: the caller asks again later.
    """
    name, seconds = f"expire_{retained.field}", int(retained.seconds)
    try:
        await retained.collection.create_index(
            retained.field, expireAfterSeconds=seconds, name=name
        )
    except OperationFailure as exc:  # the server refused: not a connection failure
        if exc.code == INDEX_OPTIONS_CONFLICT:
            await change_expiry(retained, name, seconds)
            return True
        log.info(
            "ttl_index_unavailable",
            collection=retained.collection.name,
            error=str(exc)[:200],
            fallback="periodic sweep",
        )
        return False
    return True


async def change_expiry(retained: Retained, name: str, seconds: int) -> None:
    """Give the TTL index ``name`` its new expiry with ``collMod``, in place: no rebuild, and
    no moment without an index. A server that takes TTL indexes but refuses to change one
    gets it dropped and created again (documents do not expire in between, and the build
    reads the collection once). Before, the conflict read as "no TTL index here" and the
    service fell back to hourly sweeps, keeping the old index beside them."""
    collection = retained.collection
    try:
        await collection.database.command(
            "collMod", collection.name, index={"name": name, "expireAfterSeconds": seconds}
        )
        how = "collMod"
    except OperationFailure as exc:
        log.warning("ttl_index_collmod_refused", collection=collection.name, error=str(exc)[:200])
        await collection.drop_index(name)
        await collection.create_index(retained.field, expireAfterSeconds=seconds, name=name)
        how = "recreated"
    log.info("ttl_index_changed", collection=collection.name, seconds=seconds, how=how)


async def sweep(retained: Retained, now: datetime) -> int:
    """Delete what is older than the retention; how many documents went."""
    cutoff = now - timedelta(seconds=retained.seconds)
    result = await retained.collection.delete_many({retained.field: {"$lt": cutoff}})
    return result.deleted_count


@contextlib.asynccontextmanager
async def bounded(
    retained: Sequence[Retained],
    *,
    interval: float,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[None]:
    """Keep ``retained`` bounded for as long as the block runs (a service's lifespan).

    All of it runs in the background, so a store that is down at start-up delays nothing.
    """
    task = asyncio.create_task(keep_bounded(retained, interval=interval, clock=clock))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def keep_bounded(
    retained: Sequence[Retained], *, interval: float, clock: Callable[[], datetime] = utcnow
) -> None:
    """TTL indexes where the server has them, else a sweep every ``interval`` seconds, the
    first one ``interval`` after start."""
    undecided = list(retained)
    swept: list[Retained] = []
    while True:
        for r in list(undecided):
            try:
                if not await expire_by_index(r):
                    swept.append(r)
                undecided.remove(r)
            except Exception as exc:  # not reachable yet: ask again next round
                log.warning("retention_not_set_up", collection=r.collection.name, error=repr(exc))
        await asyncio.sleep(interval)
        for r in swept:
            try:
                if deleted := await sweep(r, clock()):
                    log.info("expired", collection=r.collection.name, deleted=deleted)
            except Exception as exc:  # a sweep must never take the service down
                log.warning("sweep_failed", collection=r.collection.name, error=repr(exc))
