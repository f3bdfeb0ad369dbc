"""What each read on the decide and read paths costs as a collection grows, on the real store.
A measurement behind docs/DESIGN.md §4, not a test.

    uv run python -m tests.support.ledger_read_cost             # its own FerretDB
    uv run python -m tests.support.ledger_read_cost --mongo mongodb://h/ --sizes 100,100000

For each size, a fresh database is filled with that many ledger entries (and pointers), then
each read is timed alone (the median of ``--repeats``); the table gives milliseconds per read
and, last, the ratio of the largest size to the smallest: about 1 for a read an index serves,
about the size ratio for a scan. The cancel of a rejected booking is the whole decide path
(``CommandHandler.handle`` on a cold worker); the op_key filter is the read it used to make.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import ASCENDING, AsyncMongoClient

from bookify_platform.infra import LocalInfra, free_ports
from booking.adapters import MongoLedgerRepository, entry_id
from booking.adapters.ledger import to_document
from booking.domain import LedgerEntry, decide
from booking.metrics import BookingMetrics
from booking.service_layer import CommandHandler
from shared.events import CancelBooking, CreateResource, Event, RequestBooking
from shared.mongo import Document

Read = Callable[[], Awaitable[object]]


class Discard:
    """An event publisher that drops what it is given: only the reads are measured."""

    async def publish(self, event: Event) -> None:
        return None

    async def send(self, event: Event) -> Awaitable[None]:
        return asyncio.sleep(0)


def entries(count: int) -> tuple[CreateResource, list[LedgerEntry]]:
    """A resource of ``count`` seats and ``count - 1`` bookings of it, decided in order."""
    now = datetime.now(UTC)
    create = CreateResource(
        command_id=uuid.uuid4(),
        principal="admin",
        accepted_at=now,
        resource_id=uuid.uuid4(),
        name="Hall A",
        capacity=count,
    )
    head = decide(None, create, now).entry
    assert head is not None
    made = [head]
    for _ in range(count - 1):
        request = RequestBooking(
            command_id=uuid.uuid4(),
            principal="alice",
            accepted_at=now,
            booking_id=uuid.uuid4(),
            resource_id=create.resource_id,
            quantity=1,
        )
        head = decide(head, request, now).entry
        assert head is not None
        made.append(head)
    return create, made


async def timed(read: Read, repeats: int) -> float:
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        await read()
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1000


async def measure(mongo: AsyncMongoClient[Document], size: int, repeats: int) -> dict[str, float]:
    db = mongo[f"read_cost_{uuid.uuid4().hex[:6]}"]
    try:
        ledger = MongoLedgerRepository(db)
        await ledger.ensure_indexes()
        _, made = entries(size)
        for start in range(0, size, 1000):
            chunk = made[start : start + 1000]
            await db["ledger"].insert_many([to_document(e) for e in chunk], ordered=False)
            await db["ledger_ops"].insert_many(
                [{"_id": e.op_key, "entry_id": entry_id(e.resource_id, e.seq)} for e in chunk]
            )
        # A booking of another, full resource: decided rejected, so its cancel records nothing.
        full, [full_create] = entries(1)
        rejected = RequestBooking(
            command_id=uuid.uuid4(),
            principal="alice",
            accepted_at=datetime.now(UTC),
            booking_id=uuid.uuid4(),
            resource_id=full.resource_id,
            quantity=5,
        )
        decision = decide(full_create, rejected, datetime.now(UTC)).entry
        assert decision is not None
        await ledger.append_many([full_create, decision])
        cancel = CancelBooking(
            command_id=uuid.uuid4(),
            principal="alice",
            accepted_at=datetime.now(UTC),
            booking_id=rejected.booking_id,
            resource_id=full.resource_id,
        )
        middle = made[size // 2]
        views = db["resources"]
        await views.insert_many([{"_id": str(uuid.uuid4()), "version": 1} for _ in range(200)])

        async def cancel_rejected() -> object:
            cold = CommandHandler(ledger, Discard(), BookingMetrics(CollectorRegistry()))
            return await cold.handle(cancel)

        reads: dict[str, Read] = {
            "ledger entry by _id": lambda: ledger.get(middle.resource_id, middle.seq),
            "operation by pointer": lambda: ledger.find(
                middle.op_key, middle.resource_id, head=made[-1].seq
            ),
            "cancel of a rejected booking": cancel_rejected,
            "_id and another field": lambda: db["ledger"].find_one(
                {"_id": entry_id(middle.resource_id, middle.seq), "kind": "confirmed"}
            ),
            "before: op_key filter": lambda: db["ledger"].find_one({"op_key": middle.op_key}),
        }
        figures = {name: await timed(read, repeats) for name, read in reads.items()}
        figures["_id range, sorted, 50 (200 docs)"] = await timed(
            lambda: views.find({"_id": {"$gt": ""}}).sort("_id", ASCENDING).limit(50).to_list(),
            repeats,
        )
        return figures
    finally:
        await mongo.drop_database(db.name)


async def run(mongo_uri: str, sizes: list[int], repeats: int) -> None:
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_uri, tz_aware=True, uuidRepresentation="standard"
    )
    try:
        table: dict[int, dict[str, float]] = {}
        for size in sizes:
            started = time.perf_counter()
            table[size] = await measure(mongo, size, repeats)
            print(
                f"{size:>9,} entries measured in {time.perf_counter() - started:.0f} s", flush=True
            )
        first, last = table[sizes[0]], table[sizes[-1]]
        header = "".join(f"{size:>12,}" for size in sizes)
        print(f"{'ms per read, by ledger size':<38}{header}{'ratio':>10}")
        for name in first:
            cells = "".join(f"{table[size][name]:>12.2f}" for size in sizes)
            print(f"{name:<38}{cells}{last[name] / first[name]:>10.1f}")
    finally:
        await mongo.close()


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    [mongo_port] = free_ports(1)
    with tempfile.TemporaryDirectory() as run_dir, LocalInfra(
        Path(run_dir), mongo_port=mongo_port, services=("mongo",), attached=True
    ) as infra:  # fmt: skip
        yield infra.start().mongo_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongo", help="a MongoDB URI (default: start FerretDB)")
    parser.add_argument("--sizes", default="100,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=20)
    args: Any = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    if args.mongo:
        asyncio.run(run(args.mongo, sizes, args.repeats))
        return
    with own_server() as mongo_uri:
        asyncio.run(run(mongo_uri, sizes, args.repeats))


if __name__ == "__main__":
    main()
