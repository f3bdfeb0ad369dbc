"""What one rate-limit check costs: the gateway's token bucket in Redis (gateway.ratelimit), against
an ``$inc`` upsert counter in MongoDB (FerretDB here). A measurement behind that choice, not a test.

    uv run python -m tests.support.ratelimit_cost            # its own FerretDB and Redis
    uv run python -m tests.support.ratelimit_cost --redis redis://h:6379/0 --mongo mongodb://h/

For each store: the latency of one check alone (p50, p99), then checks per second with
``--concurrency`` requests in flight (as a busy gateway has), over ``--principals`` principals,
and this process's CPU per check meanwhile (what a gateway pays for it).
The Mongo counter is what a limiter would need: the count after the increment, so one
``findAndModify`` with ``$inc`` and upsert per request (a write), keyed by principal and window.
Last, ``RACE`` concurrent increments of one key: what a limiter would count of a burst.
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
from pathlib import Path

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from bookify_platform.infra import LocalInfra, free_ports
from gateway.ratelimit import build_limiter

Check = Callable[[str], Awaitable[object]]
RACE = 500


async def measure(
    check: Check, *, requests: int, concurrency: int, principals: int
) -> dict[str, float]:
    names = [f"p{i}" for i in range(principals)]
    for name in names[:concurrency]:  # connections and first documents exist before timing
        await check(name)
    alone = []
    for i in range(min(requests, 1000)):
        started = time.perf_counter()
        await check(names[i % principals])
        alone.append(time.perf_counter() - started)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await check(names[i % principals])

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(requests)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    quantiles = statistics.quantiles(alone, n=100)
    return {
        "p50_ms": round(quantiles[49] * 1000, 3),
        "p99_ms": round(quantiles[98] * 1000, 3),
        "checks_per_s": round(requests / elapsed),
        "cpu_us_per_check": round(cpu / requests * 1e6),
    }


async def run(redis_url: str, mongo_uri: str, args: argparse.Namespace) -> None:
    limiter = build_limiter(
        redis_url,
        rate_per_second=1e9,  # never refuse: the cost of the check itself, not of a 429
        burst=1_000_000_000,
        timeout=5.0,
        retry_after_error=1.0,
        key_prefix=f"cost-{uuid.uuid4().hex[:6]}",
        registry=CollectorRegistry(),
    )
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    db_name = f"ratelimit_cost_{uuid.uuid4().hex[:6]}"
    counters = mongo[db_name]["rate_limit"]

    async def inc(principal: str, window: int | None = None) -> object:
        window = int(time.time() // 2) if window is None else window
        return await counters.find_one_and_update(
            {"_id": f"{principal}:{window}"},
            {"$inc": {"n": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )

    options = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "principals": args.principals,
    }
    try:
        redis = await measure(limiter.acquire, **options)
        print(f"redis  token bucket (GCRA, one script call per batch): {redis}", flush=True)
        mongo_figures = await measure(inc, **options)
        print(f"mongo  $inc upsert (findAndModify): {mongo_figures}", flush=True)
        # One principal's window hit by RACE requests at once: a limiter must count them all.
        # Concurrent upserts of a missing key may also fail outright with a duplicate key.
        raced = await asyncio.gather(*(inc("race", 0) for _ in range(RACE)), return_exceptions=True)
        failed = sum(isinstance(r, DuplicateKeyError) for r in raced)
        counted = await counters.find_one({"_id": "race:0"})
        print(
            f"mongo  {RACE} concurrent $inc on one key counted {counted} "
            f"({failed} failed with a duplicate key)",
            flush=True,
        )
    finally:
        await limiter.close()
        await mongo.drop_database(db_name)
        await mongo.close()


@contextlib.contextmanager
def own_servers() -> Iterator[tuple[str, str]]:
    mongo_port, redis_port = free_ports(2)
    with tempfile.TemporaryDirectory() as run_dir, LocalInfra(
        Path(run_dir), mongo_port=mongo_port, redis_port=redis_port,
        services=("mongo", "redis"), attached=True,
    ) as infra:  # fmt: skip
        endpoints = infra.start()
        yield endpoints.redis_url, endpoints.mongo_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", help="a Redis URL (default: start one)")
    parser.add_argument("--mongo", help="a MongoDB URI (default: start FerretDB)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--principals", type=int, default=100)
    args = parser.parse_args()
    if args.redis and args.mongo:
        asyncio.run(run(args.redis, args.mongo, args))
        return
    with own_servers() as (redis_url, mongo_uri):
        asyncio.run(run(args.redis or redis_url, args.mongo or mongo_uri, args))


if __name__ == "__main__":
    main()
