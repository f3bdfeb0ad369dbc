"""`bookify bench pipeline | generator`: the booking pipeline under a fixed arrival rate beside
its ceiling, and the open-model generator beside wrk.

Not tests: they print figures (``as_dict`` for ``--json``). The ceiling is a bare FastAPI
endpoint that answers 202 and does nothing else, served by uvicorn in its own process and
driven by the same generator in the same run, so the ratio between the two is what the
pipeline costs on this machine. Every request goes through the generator ``bookify load
--open`` uses (:func:`loadtests.openmodel.run_open_model` and its
:class:`~loadtests.openmodel.HttpClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from hdrh.histogram import HdrHistogram

from bookify_platform.infra.process import free_port, spawn, terminate
from loadtests.data import Principal
from loadtests.mix import Crowd, describe
from loadtests.openmodel import (
    HttpClient,
    HttpError,
    OpenModelResult,
    new_histogram,
    run_open_model,
)
from loadtests.recorder import process_cpu_clock
from shared.auth import AuthSettings, Scope, mint_token
from shared.kafka_security import kafka_client_options
from shared.settings import Topics

PRINCIPALS = 2_000  # spread over many principals so the per-principal rate limit never bites
# A crowd's principals come back (to retry, read, cancel their own bookings): fewer of them, each
# still well under the rate limit (20/s) at the rates the bench offers.
CROWD_PRINCIPALS = 200
# The generator's keep-alive pool; arrivals beyond it wait inside their latency. Enough in
# flight that a server waiting on its stores still has work (fewer measured the pool, not the
# gateway: see docs/PERFORMANCE.md#the-benchmarks-connection-pool), and below the usual limit
# of 1,024 open files per process, for the server and the generator.
CONNECTIONS = 512


@dataclass(frozen=True)
class BenchConfig:
    gateway: str
    kafka_bootstrap: str
    rate: float
    duration: float
    topic_prefix: str = ""
    mix: dict[str, float] | None = None
    """Weights of a crowd's operations (:mod:`loadtests.mix`); None: bookings alone."""
    capacity: int | None = None
    """Seats of the hot resource; None: enough for every booking offered."""
    seed: int = 0


@dataclass
class PipelineFigures:
    """``confirm_latency_us`` is the platform's own accepted→decided: from the ``accepted_at``
    the gateway put in the 202 (taken before its publish, so never flattering) to the Kafka
    timestamp of booking's event (taken when booking sends it). Both are this machine's clock
    in the services themselves, so a busy generator neither adds to it nor hides any of it.
    ``seen_latency_us`` is the same booking as the generator saw it: its 202 arriving, then
    the event reaching the generator's own consumer; the difference is the generator's share.
    """

    accept: OpenModelResult
    confirm_latency_us: HdrHistogram
    confirmed: int
    rejected: int
    missing: int
    seen_latency_us: HdrHistogram = field(default_factory=new_histogram)
    operations: dict[str, Any] | None = None
    """Per operation of a ``--mix`` run: what :meth:`loadtests.mix.Crowd.as_dict` gives."""
    cancel_latency_us: HdrHistogram = field(default_factory=new_histogram)
    """A cancel's 202 seen to its booking's BookingCancelled seen (cancels that freed seats)."""
    cancels_accepted: int = 0

    def as_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "accept": result_dict(self.accept),
            "accepted_to_decided_ms": percentiles_ms(self.confirm_latency_us),
            "accept_seen_to_decision_seen_ms": percentiles_ms(self.seen_latency_us),
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "missing": self.missing,
        }
        if self.operations is not None:
            figures["operations"] = self.operations
            figures["cancels"] = {
                "accepted": self.cancels_accepted,
                "cancelled": self.cancel_latency_us.get_total_count(),
                "accepted_to_cancelled_seen_ms": percentiles_ms(self.cancel_latency_us),
            }
        return figures


def percentiles_ms(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50 .. max in milliseconds; None where nothing was recorded."""
    points = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9, "max": 100.0}
    if not histogram.get_total_count():
        return dict.fromkeys(points)
    return {k: histogram.get_value_at_percentile(p) / 1000 for k, p in points.items()}


def result_dict(r: OpenModelResult) -> dict[str, Any]:
    return {
        "rate": r.rate,
        "duration_s": r.duration,
        "elapsed_s": r.elapsed,
        "intended": r.intended,
        "completed": r.completed,
        "dropped": r.dropped,
        "failed": r.failed,
        "statuses": {str(status): n for status, n in sorted(r.statuses.items())},
        "throughput": r.throughput,
        "latency_ms": percentiles_ms(r.latency_us),
        "schedule_lag_ms": percentiles_ms(r.schedule_lag_us),
    }


def principals(count: int) -> list[Principal]:
    auth = AuthSettings()
    scopes: list[str] = [Scope.BOOKINGS_WRITE, Scope.BOOKINGS_READ]
    return [Principal(f"bench-{i}", mint_token(auth, f"bench-{i}", scopes)) for i in range(count)]


async def create_resource(client: HttpClient, capacity: int) -> str:
    admin = mint_token(AuthSettings(), "bench-admin", [Scope.RESOURCES_ADMIN, Scope.BOOKINGS_READ])
    reply = await client.post(
        "/v1/resources",
        json={"name": "bench", "capacity": capacity},
        headers={"Authorization": f"Bearer {admin}"},
    )
    if reply.status >= 400:
        raise RuntimeError(f"creating the bench resource: {reply.status} {reply.body[:300]!r}")
    return str(reply.headers["location"].rsplit("/", 1)[-1])


async def bench_pipeline(config: BenchConfig, progress: Any = print) -> PipelineFigures:
    crowd_of = principals(PRINCIPALS)
    accepted_at: dict[str, tuple[float, str]] = {}  # booking -> (202 seen, its accepted_at)
    outcome_at: dict[str, tuple[str, float, float]] = {}  # -> (kind, seen, event timestamp)
    cancelled_at: dict[str, float] = {}  # booking -> its BookingCancelled seen
    consumer = AIOKafkaConsumer(
        Topics(config.topic_prefix).events,
        **kafka_client_options(config.kafka_bootstrap),
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    accepting_done = asyncio.Event()
    all_decided = asyncio.Event()

    async def watch() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    ce_type = dict(record.headers).get("ce_type", b"").decode()
                    if not ce_type.startswith("bookify.booking."):
                        continue
                    booking, kind = json.loads(record.value)["booking_id"], ce_type.split(".")[2]
                    if kind == "cancelled":
                        cancelled_at.setdefault(booking, now)
                        continue
                    decided = record.timestamp / 1000  # CreateTime: booking's send
                    outcome_at.setdefault(booking, (kind, now, decided))
            if accepting_done.is_set() and accepted_at.keys() <= outcome_at.keys():
                all_decided.set()

    crowd: Crowd | None = None
    async with HttpClient(config.gateway, max_connections=CONNECTIONS) as client:
        capacity = config.capacity or int(config.rate * config.duration) + 1
        resource = await create_resource(client, min(capacity, 100_000))
        await client.warm_up("/healthz")
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1.0)  # let the watcher's partition assignment settle

        body = {"resource_id": resource, "quantity": 1}

        async def book(i: int) -> int:
            reply = await client.post("/v1/bookings", json=body, headers=crowd_of[i].auth)
            if reply.status == 202:
                seen, answer = time.time(), reply.json()
                accepted_at[answer["id"]] = (seen, answer["accepted_at"])  # parsed after the run
            return reply.status

        send: Callable[[int], Awaitable[int]] = book
        if config.mix is not None:
            crowd = Crowd(
                client, crowd_of[:CROWD_PRINCIPALS], [resource], config.mix, seed=config.seed
            )
            accepted_at = crowd.accepted
            send = crowd.send
            progress(f"pipeline: the crowd's mix is {describe(config.mix)}")
        progress(f"pipeline: {config.rate:g}/s for {config.duration:g} s against {config.gateway}")
        accept = await run_open_model(
            lambda i: send(i % PRINCIPALS), rate=config.rate, duration=config.duration
        )
        accepting_done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_decided.wait(), timeout=30)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await consumer.stop()

    confirm, seen = new_histogram(), new_histogram()
    counts = {"confirmed": 0, "rejected": 0}
    for booking, (accept_seen, accepted) in accepted_at.items():
        if booking in outcome_at:
            kind, outcome_seen, decided = outcome_at[booking]
            counts[kind] = counts.get(kind, 0) + 1
            accepted_s = datetime.fromisoformat(accepted).timestamp()
            confirm.record_value(max(1, int((decided - accepted_s) * 1e6)))
            seen.record_value(max(1, int((outcome_seen - accept_seen) * 1e6)))
    missing = len(accepted_at.keys() - outcome_at.keys())
    figures = PipelineFigures(
        accept, confirm, counts["confirmed"], counts["rejected"], missing, seen_latency_us=seen
    )
    if crowd is not None:
        figures.operations = crowd.as_dict()
        figures.cancels_accepted = len(crowd.cancels)
        for booking, cancel_seen in crowd.cancels.items():
            if booking in cancelled_at:
                latency = max(0.0, cancelled_at[booking] - cancel_seen)
                figures.cancel_latency_us.record_value(max(1, int(latency * 1e6)))
    return figures


@dataclass(frozen=True)
class Served:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def ceiling_server(run_dir: Path) -> AsyncIterator[Served]:
    """The bare FastAPI app under uvicorn in its own process; yields its base URL and pid."""
    port = free_port()
    proc = spawn(
        [
            sys.executable, "-m", "uvicorn", "bookify_bench.ceiling:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ],
        log_path=run_dir / "bench-ceiling.log",
        attached=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with HttpClient(url, timeout=2) as client:
            for _ in range(100):
                with contextlib.suppress(HttpError):
                    if (await client.get("/healthz")).status == 200:
                        break
                await asyncio.sleep(0.1)
        yield Served(url, proc.pid)
    finally:
        terminate(proc.pid, timeout=5, popen=proc)


def _client(url: str) -> HttpClient:
    return HttpClient(url, max_connections=CONNECTIONS)


@dataclass(frozen=True)
class CeilingRun:
    result: OpenModelResult
    server_cpu_s: float  # the bare endpoint's own CPU time during the schedule


async def bench_ceiling(rate: float, duration: float, run_dir: Path) -> CeilingRun:
    async with ceiling_server(run_dir) as served, _client(served.url) as client:
        body = {"resource_id": "00000000-0000-0000-0000-000000000000", "quantity": 1}

        async def post(_: int) -> int:
            return (await client.post("/v1/bookings", json=body)).status

        await client.warm_up("/healthz")
        server_cpu = process_cpu_clock(served.pid)
        before = server_cpu()
        result = await run_open_model(post, rate=rate, duration=duration)
        return CeilingRun(result, server_cpu() - before)


@dataclass
class GeneratorFigures:
    rate: float
    open_model: OpenModelResult
    open_model_cpu_s: float
    wrk_requests: int
    wrk_seconds: float
    wrk_cpu_s: float

    def per_core(self) -> tuple[float, float]:
        """Requests per CPU-second of the generator: (open model, wrk)."""
        return (
            self.open_model.completed / self.open_model_cpu_s if self.open_model_cpu_s else 0.0,
            self.wrk_requests / self.wrk_cpu_s if self.wrk_cpu_s else 0.0,
        )

    def as_dict(self) -> dict[str, Any]:
        open_per_core, wrk_per_core = self.per_core()
        return {
            "rate": self.rate,
            "open_model": {
                **result_dict(self.open_model),
                "cpu_s": self.open_model_cpu_s,
                "requests_per_core": open_per_core,
            },
            "wrk": {
                "requests": self.wrk_requests,
                "seconds": self.wrk_seconds,
                "requests_per_s": self.wrk_requests / self.wrk_seconds if self.wrk_seconds else 0.0,
                "cpu_s": self.wrk_cpu_s,
                "requests_per_core": wrk_per_core,
            },
            "open_model_over_wrk_per_core": open_per_core / wrk_per_core if wrk_per_core else None,
        }


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def bench_generator(rate: float, duration: float, run_dir: Path) -> GeneratorFigures:
    """The open-model generator and Debian's wrk against the same endpoint, in one run.

    Each is charged only its own CPU time (getrusage of this process, then of the wrk
    child), so "requests per core" compares the generators, not the server.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    async with ceiling_server(run_dir) as served, _client(served.url) as client:

        async def get(_: int) -> int:
            return (await client.get("/healthz")).status

        await client.warm_up("/healthz")
        before = _cpu_seconds(resource.RUSAGE_SELF)
        open_model = await run_open_model(get, rate=rate, duration=duration)
        open_cpu = _cpu_seconds(resource.RUSAGE_SELF) - before

        before_children = _cpu_seconds(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run,
            [wrk, "-t1", "-c64", f"-d{int(duration)}s", f"{served.url}/healthz"],
            capture_output=True,
            text=True,
            check=True,
        )
        wrk_seconds = time.monotonic() - started
        wrk_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - before_children
    match = re.search(r"(\d+) requests in", done.stdout)
    return GeneratorFigures(
        rate=rate,
        open_model=open_model,
        open_model_cpu_s=open_cpu,
        wrk_requests=int(match.group(1)) if match else 0,
        wrk_seconds=wrk_seconds,
        wrk_cpu_s=wrk_cpu,
    )


def generator_report(f: GeneratorFigures) -> str:
    open_per_core, wrk_per_core = f.per_core()
    o = f.open_model
    return "\n".join(
        [
            f"{'':34}{'open model':>14}{'wrk':>14}",
            f"{'requests completed':34}{o.completed:14d}{f.wrk_requests:14d}",
            f"{'requests/s (wall clock)':34}{o.throughput:14.1f}"
            f"{f.wrk_requests / f.wrk_seconds if f.wrk_seconds else 0:14.1f}",
            f"{'generator CPU (s)':34}{f.open_model_cpu_s:14.2f}{f.wrk_cpu_s:14.2f}",
            f"{'requests/s per core':34}{open_per_core:14.1f}{wrk_per_core:14.1f}",
            f"{'offered rate / dropped':34}{f'{f.rate:g}/s / {o.dropped}':>14}{'closed loop':>14}",
            f"{'scheduling lag p99 (ms)':34}"
            f"{o.schedule_lag_us.get_value_at_percentile(99) / 1000:14.2f}{'n/a':>14}",
            f"open model / wrk per core = {open_per_core / wrk_per_core:.3f}"
            if wrk_per_core
            else "",
        ]
    )


def pipeline_dict(pipeline: PipelineFigures, ceiling: OpenModelResult) -> dict[str, Any]:
    """What :func:`report` prints, for ``--json``."""
    a = pipeline.accept
    return {
        "pipeline": pipeline.as_dict(),
        "ceiling": result_dict(ceiling),
        "throughput_over_ceiling": a.throughput / ceiling.throughput
        if ceiling.throughput
        else None,
    }


def report(pipeline: PipelineFigures, ceiling: OpenModelResult) -> str:
    def ms(h: HdrHistogram, p: float) -> str:
        return f"{h.get_value_at_percentile(p) / 1000:8.1f}" if h.get_total_count() else "     n/a"

    a = pipeline.accept
    lines = [
        f"{'':28}{'pipeline':>12}{'ceiling':>12}",
        f"{'offered rate (req/s)':28}{a.rate:12.1f}{ceiling.rate:12.1f}",
        f"{'completed/s':28}{a.throughput:12.1f}{ceiling.throughput:12.1f}",
        f"{'accepted (202)':28}{a.statuses.get(202, 0):12d}{ceiling.statuses.get(202, 0):12d}",
        f"{'dropped / failed':28}{f'{a.dropped} / {a.failed}':>12}"
        f"{f'{ceiling.dropped} / {ceiling.failed}':>12}",
        f"{'accept latency p50 (ms)':28}{ms(a.latency_us, 50):>12}{ms(ceiling.latency_us, 50):>12}",
        f"{'accept latency p99 (ms)':28}{ms(a.latency_us, 99):>12}{ms(ceiling.latency_us, 99):>12}",
        f"{'generator lag p99 (ms)':28}{ms(a.schedule_lag_us, 99):>12}"
        f"{ms(ceiling.schedule_lag_us, 99):>12}",
        f"{'accepted→decided p50 (ms)':28}{ms(pipeline.confirm_latency_us, 50):>12}",
        f"{'accepted→decided p99 (ms)':28}{ms(pipeline.confirm_latency_us, 99):>12}",
        f"{'  as the generator saw it':28}{ms(pipeline.seen_latency_us, 99):>12}",
        f"{'confirmed / rejected / none':28}"
        f"{f'{pipeline.confirmed} / {pipeline.rejected} / {pipeline.missing}':>12}",
    ]
    if ceiling.throughput:
        lines.append(f"pipeline throughput = {a.throughput / ceiling.throughput:.2f} x the ceiling")
    if pipeline.operations is not None:
        lines += ["", operations_report(pipeline)]
    return "\n".join(lines)


def operations_report(pipeline: PipelineFigures) -> str:
    """Per operation of the crowd: what it was answered, and its latency."""

    def p99(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    lines = [
        f"{'operation':14}{'sent':>8}{'202':>8}{'200':>8}{'409':>8}{'503':>8}{'other':>8}"
        f"{'no answer':>10}{'p99 (ms)':>10}"
    ]
    for name, op in (pipeline.operations or {}).items():
        statuses = {int(s): n for s, n in op["statuses"].items()}
        other = sum(n for s, n in statuses.items() if s not in (200, 202, 409, 503))
        cells = "".join(f"{statuses.get(s, 0):>8}" for s in (202, 200, 409, 503))
        lines.append(
            f"{name:14}{op['sent']:>8}{cells}{other:>8}{op['no_answer']:>10}"
            f"{p99(op['latency_p99_ms']):>10}"
        )
    cancel = pipeline.cancel_latency_us
    lines.append(
        f"cancels accepted {pipeline.cancels_accepted}, of which {cancel.get_total_count()} "
        f"freed seats (202 seen -> cancelled seen p99 "
        f"{cancel.get_value_at_percentile(99) / 1000 if cancel.get_total_count() else 0:.1f} ms); "
        "the others' bookings ended rejected or were cancelled already"
    )
    return "\n".join(lines)
