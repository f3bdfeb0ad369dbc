"""`bookify bench push`: what open push streams cost one gateway, and how fast they deliver.

Not a test: it prints figures. Against `bookify infra` (Kafka and FerretDB), on topics and
databases of its own, it runs two parts:

- **Held streams.** A gateway alone; ``GET /v1/bookings/events`` streams (one principal each,
  as many clients are) opened up to each level (1,000, 5,000, 10,000 by default), then held
  idle for ``idle_seconds`` with heartbeats going out. At each level: the gateway's resident
  memory above what it had with no stream, per stream, beside the 50 KiB aim; and its CPU
  while idle, as cores busy.
- **Delivery.** Gateway, booking and consumer; ``streams`` principals each hold their
  ``/v1/bookings/events`` stream, and the open model books at ``rate`` per second on one hot
  resource, each booking by the next principal in turn. For each decision: from its event's
  Kafka timestamp (booking's send) to the moment the client read it from its stream, p50
  and p99, beside the 100 ms aim.

The streams are held by a child process of their own (so the load generator and the Kafka
observer never delay the reading), each over its own plain asyncio connection: a few KiB a
stream, where an HTTP library's client would cost more than the server being measured. One
process holds them all: it needs one file per stream, under the 20,000 open files a process
may have here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from bookify_bench.pipeline import create_resource
from bookify_bench.stages import delete_topics, drop_databases
from bookify_platform.infra.process import free_port
from bookify_platform.services import Platform, PlatformConfig, ServiceName
from loadtests.openmodel import HttpClient, run_open_model
from loadtests.recorder import process_cpu_clock
from loadtests.sse import EventStream, StreamRefusedError
from shared.auth import AuthSettings, Scope, mint_token
from shared.kafka_security import kafka_client_options
from shared.settings import Topics

Progress = Callable[[str], None]

MEMORY_AIM_KIB = 50.0  # gateway memory per open stream (issue 22)
DELIVERY_AIM_MS = 100.0  # p99, decision's Kafka timestamp -> client read
OPENING_AT_ONCE = 200  # streams being opened concurrently
STREAM_PATH = "/v1/bookings/events"


@dataclass(frozen=True)
class PushBenchConfig:
    kafka_bootstrap: str
    mongo_uri: str
    run_dir: Path
    levels: Sequence[int] = (1_000, 5_000, 10_000)
    idle_seconds: float = 30.0
    heartbeat_seconds: float = 15.0
    streams: int = 5_000
    rate: float = 400.0
    duration: float = 20.0


@dataclass(frozen=True)
class HeldLevel:
    streams: int
    refused: int  # streams the gateway did not open (any status but 200)
    rss_mib: float
    kib_per_stream: float
    idle_cores: float  # gateway CPU per wall second while the streams sat idle

    @property
    def memory_ratio(self) -> float:
        return self.kib_per_stream / MEMORY_AIM_KIB


@dataclass
class DeliveryFigures:
    streams: int
    offered: float
    duration: float
    accepted: int
    delivered: int  # decisions read from a stream, of those Kafka carried
    decided: int  # decisions on the events topic for the accepted bookings
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    # Each service's CPU per wall second while the bookings were offered: near 1, that
    # process's own CPU set the pace; their sum near 2, the machine's.
    cores: dict[str, float] = field(default_factory=dict)
    # How much of it came before the gateway's own streams: Kafka timestamp -> its feed handing
    # the event over (bounds of bookify_push_feed_lag_seconds' buckets; None: none counted).
    feed_p50_s: float | None = None
    feed_p99_s: float | None = None
    # The read side meanwhile (it keeps the principals' lists too): seconds after the last
    # booking until the views had every decision (None: not within a minute), and its
    # accepted -> visible p99 (the upper bound of bookify_booking_e2e_seconds' bucket).
    views_behind_s: float | None = None
    views_p99_s: float | None = None
    other_statuses: dict[int, int] = field(default_factory=dict)  # answers but 202 (0: none)

    @property
    def p99_ratio(self) -> float | None:
        return None if self.p99_ms is None else self.p99_ms / DELIVERY_AIM_MS


@dataclass
class PushFigures:
    baseline_rss_mib: float
    heartbeat_seconds: float
    idle_seconds: float
    held: list[HeldLevel] = field(default_factory=list)
    delivery: DeliveryFigures | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["held"] = [{**asdict(h), "memory_ratio": h.memory_ratio} for h in self.held]
        if self.delivery is not None:
            out["delivery"] = {**asdict(self.delivery), "p99_ratio": self.delivery.p99_ratio}
        return out


# ------------------------------------------------------------------ the stream holder


async def read_bookings(stream: EventStream, seen: dict[str, float]) -> None:
    """Until the server ends ``stream``: each booking id its events carry (their id is
    ``<booking id>:<status>``), with the wall time it was first read."""
    async for event in stream.events():
        if event.id:
            seen.setdefault(event.id.split(":", 1)[0], time.time())


async def _hold(url: str, tokens: Sequence[str], pipe: Connection) -> None:
    """Open streams for ``tokens`` a level at a time (each level's count comes down the pipe,
    answered with the count refused), reading all of them, until told ``stop``; then send
    back every booking id read with its time."""
    streams: list[EventStream] = []
    readers: list[asyncio.Task[None]] = []
    seen: dict[str, float] = {}
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    loop = asyncio.get_running_loop()

    async def open_one(token: str) -> bool:
        async with gate:
            try:
                stream = await EventStream.open(
                    url, STREAM_PATH, {"Authorization": f"Bearer {token}"}
                )
            except (OSError, StreamRefusedError):
                return False
        streams.append(stream)
        readers.append(asyncio.create_task(read_bookings(stream, seen)))
        return True

    while True:
        order = await loop.run_in_executor(None, pipe.recv)
        if order == "stop":
            break
        wanted = int(order)
        start = len(streams)
        opened = await asyncio.gather(*(open_one(t) for t in tokens[start:wanted]))
        pipe.send(opened.count(False))
    for stream in streams:
        stream.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    pipe.send(seen)


def _holder_main(url: str, tokens: Sequence[str], pipe: Connection) -> None:
    asyncio.run(_hold(url, tokens, pipe))


class Holder:
    """The child process that holds the streams (see :func:`_hold`)."""

    def __init__(self, url: str, tokens: Sequence[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_holder_main, args=(url, list(tokens), child), daemon=True
        )
        self._process.start()

    async def open_up_to(self, count: int) -> int:
        """Streams refused on the way to ``count`` open."""
        self._pipe.send(str(count))
        refused: int = await asyncio.to_thread(self._pipe.recv)
        return refused

    async def stop(self) -> dict[str, float]:
        self._pipe.send("stop")
        seen: dict[str, float] = await asyncio.to_thread(self._pipe.recv)
        await asyncio.to_thread(self._process.join, 30)
        return seen

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()


# ------------------------------------------------------------------ the bench


def _tokens(count: int, tag: str) -> list[str]:
    auth = AuthSettings()
    scopes: list[str] = [Scope.BOOKINGS_READ, Scope.BOOKINGS_WRITE]
    return [mint_token(auth, f"push-{tag}-{i}", scopes) for i in range(count)]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _platform(
    config: PushBenchConfig, names: tuple[ServiceName, ...], progress: Progress
) -> tuple[Platform, str, str]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    db_prefix = prefix.replace(".", "_").replace("-", "_")
    top = max(max(config.levels, default=0), config.streams)
    platform_config = PlatformConfig(
        kafka_bootstrap=config.kafka_bootstrap,
        mongo_uri=config.mongo_uri,
        ports={name: free_port() for name in names},
        topic_prefix=prefix,
        db_prefix=db_prefix,
        environment="test",
        rate_limit_storage="memory://",  # one gateway
        extra_env={
            "OTEL_SDK_DISABLED": "true",
            **{f"BOOKIFY_{n.upper()}_LOG_LEVEL": "WARNING" for n in names},
            "BOOKIFY_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
            "BOOKIFY_GATEWAY_RATE_LIMIT_BURST": "1000000",
            "BOOKIFY_GATEWAY_PUSH_MAX_STREAMS": str(top + 100),
            "BOOKIFY_GATEWAY_PUSH_HEARTBEAT_SECONDS": str(config.heartbeat_seconds),
        },
    )
    platform = Platform(platform_config, config.run_dir, names=names, progress=progress)
    return platform, prefix, db_prefix


async def _held(config: PushBenchConfig, figures: PushFigures, progress: Progress) -> None:
    platform, prefix, db_prefix = _platform(config, ("gateway",), progress)
    holder: Holder | None = None
    try:
        platform.start()
        gateway = platform["gateway"]
        assert gateway.pid is not None
        async with HttpClient(gateway.url) as client:
            await client.warm_up("/healthz")
        await asyncio.sleep(2)
        figures.baseline_rss_mib = _rss_mib(gateway.pid)
        cpu = process_cpu_clock(gateway.pid)
        holder = Holder(gateway.url, _tokens(max(config.levels), "held"))
        for level in sorted(config.levels):
            progress(f"held: opening streams up to {level:,}")
            refused = await holder.open_up_to(level)
            await asyncio.sleep(2)  # the openings' own work settles
            before, started = cpu(), time.monotonic()
            await asyncio.sleep(config.idle_seconds)
            idle = (cpu() - before) / (time.monotonic() - started)
            rss = _rss_mib(gateway.pid)
            held = level - refused
            kib = 1024 * (rss - figures.baseline_rss_mib) / held if held else 0.0
            figures.held.append(HeldLevel(held, refused, rss, kib, idle))
            progress(f"held: {held:,} open, {kib:.1f} KiB each, {idle:.3f} cores idle")
        await holder.stop()
    finally:
        if holder is not None:
            holder.kill()
        platform.stop()
        await drop_databases(config.mongo_uri, db_prefix)
        await delete_topics(config.kafka_bootstrap, Topics(prefix))


async def _delivery(config: PushBenchConfig, figures: PushFigures, progress: Progress) -> None:
    platform, prefix, db_prefix = _platform(config, ("gateway", "booking", "consumer"), progress)
    holder: Holder | None = None
    decided_at: dict[str, float] = {}  # booking id -> its decision event's Kafka timestamp
    observer = AIOKafkaConsumer(
        Topics(prefix).events,
        **kafka_client_options(config.kafka_bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )

    booked, all_decided = asyncio.Event(), asyncio.Event()
    accepted: set[str] = set()

    async def observe() -> None:
        while True:
            for records in (await observer.getmany(timeout_ms=200)).values():
                for record in records:
                    kind = dict(record.headers).get("ce_type", b"").decode()
                    if kind.startswith("bookify.booking."):
                        booking = json.loads(record.value)["booking_id"]
                        decided_at.setdefault(booking, record.timestamp / 1000)
            if booked.is_set() and accepted <= decided_at.keys():
                all_decided.set()

    try:
        platform.start()
        gateway = platform["gateway"]
        tokens = _tokens(config.streams, "live")
        async with HttpClient(gateway.url, max_connections=256) as client:
            resource = await create_resource(client, 100_000)
            await client.warm_up("/healthz")
            await observer.start()
            watching = asyncio.create_task(observe())
            holder = Holder(gateway.url, tokens)
            progress(f"delivery: opening {config.streams:,} streams")
            refused = await holder.open_up_to(config.streams)
            if refused:
                raise RuntimeError(f"{refused} of {config.streams} streams were refused")
            body = {"resource_id": resource, "quantity": 1}

            async def book(i: int) -> int:
                token = tokens[i % config.streams]
                reply = await client.post(
                    "/v1/bookings", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                if reply.status == 202:
                    accepted.add(reply.json()["id"])
                return reply.status

            progress(f"delivery: {config.rate:g} bookings/s for {config.duration:g} s")
            clocks = {s.name: process_cpu_clock(s.pid) for s in platform.services.values()}
            clocks["stream holder"] = process_cpu_clock(holder.pid)
            clocks["generator"] = process_cpu_clock()  # this process
            before, started = {n: c() for n, c in clocks.items()}, time.monotonic()
            offered = await run_open_model(book, rate=config.rate, duration=config.duration)
            wall = time.monotonic() - started
            cores = {n: (c() - before[n]) / wall for n, c in clocks.items()}
            booked_at = time.monotonic()
            booked.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_decided.wait(), timeout=60)
            await asyncio.sleep(2)  # the last decisions reach the streams
            seen = await holder.stop()
            async with HttpClient(gateway.url) as scrape:
                feed_lag = await histogram_buckets(scrape, "bookify_push_feed_lag_seconds")
            views_behind, views_p99 = await _views_caught_up(
                platform["consumer"].url,
                len(accepted) + 1,
                booked_at,  # + the resource
            )
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    finally:
        if holder is not None:
            holder.kill()
        await observer.stop()
        platform.stop()
        await drop_databases(config.mongo_uri, db_prefix)
        await delete_topics(config.kafka_bootstrap, Topics(prefix))
    decided = accepted & decided_at.keys()
    latencies = sorted(1000 * (seen[b] - decided_at[b]) for b in decided if b in seen)
    figures.delivery = DeliveryFigures(
        streams=config.streams,
        offered=config.rate,
        duration=config.duration,
        accepted=len(accepted),
        delivered=len(latencies),
        decided=len(decided),
        p50_ms=statistics.median(latencies) if latencies else None,
        p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else None,
        cores=cores,
        feed_p50_s=bucket_bound(feed_lag, 0.5),
        feed_p99_s=bucket_bound(feed_lag, 0.99),
        views_behind_s=views_behind,
        views_p99_s=views_p99,
        other_statuses={k: n for k, n in offered.statuses.items() if k != 202},
    )


async def _views_caught_up(
    consumer_url: str, events: int, since: float, within: float = 60.0
) -> tuple[float | None, float | None]:
    """(seconds from ``since`` until the consumer had applied ``events`` events, its e2e p99
    as a bucket bound), from its /metrics."""
    deadline = time.monotonic() + within
    async with HttpClient(consumer_url) as client:
        while True:
            buckets = await histogram_buckets(client, "bookify_booking_e2e_seconds")
            if _count(buckets) >= events:
                return time.monotonic() - since, bucket_bound(buckets, 0.99)
            if time.monotonic() > deadline:
                return None, None
            await asyncio.sleep(0.2)


async def histogram_buckets(client: HttpClient, name: str) -> list[tuple[float, float]]:
    """The cumulative buckets (upper bound, count) of the histogram ``name`` at /metrics."""
    for family in text_string_to_metric_families((await client.get("/metrics")).body.decode()):
        if family.name == name:
            return sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name.endswith("_bucket")
            )
    return []


def _count(buckets: Sequence[tuple[float, float]]) -> float:
    return buckets[-1][1] if buckets else 0.0


def bucket_bound(buckets: Sequence[tuple[float, float]], share: float) -> float | None:
    """The upper bound of the bucket that holds the ``share`` quantile (None: no samples)."""
    count = _count(buckets)
    return next((le for le, n in buckets if n >= share * count), None) if count else None


def percentile(ordered: Sequence[float], share: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bench_push(config: PushBenchConfig, progress: Progress = print) -> PushFigures:
    figures = PushFigures(0.0, config.heartbeat_seconds, config.idle_seconds)
    if config.levels:
        await _held(config, figures, progress)
    if config.streams:
        await _delivery(config, figures, progress)
    return figures


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def push_report(f: PushFigures) -> str:
    lines = []
    if f.held:
        lines += [
            f"held streams (GET {STREAM_PATH}, heartbeat every {f.heartbeat_seconds:g} s, "
            f"idle {f.idle_seconds:g} s; gateway alone at {f.baseline_rss_mib:,.0f} MiB)",
            f"{'streams':>9}{'refused':>9}{'RSS MiB':>10}{'KiB/stream':>12}"
            f"{'/ 50 KiB':>10}{'idle cores':>12}",
        ]
        lines += [
            f"{h.streams:>9,}{h.refused:>9,}{h.rss_mib:>10,.0f}{h.kib_per_stream:>12.1f}"
            f"{h.memory_ratio:>10.2f}{h.idle_cores:>12.3f}"
            for h in f.held
        ]
    if (d := f.delivery) is not None:
        ratio = "n/a" if d.p99_ratio is None else f"{d.p99_ratio:.2f}"
        lines += [
            f"delivery: {d.streams:,} streams open, {d.offered:g} bookings/s offered for "
            f"{d.duration:g} s on one resource",
            f"  accepted {d.accepted:,} (other answers: {d.other_statuses or '-'}), decided "
            f"{d.decided:,}, read from a stream {d.delivered:,}",
            f"  Kafka timestamp -> client read: p50 {_ms(d.p50_ms)} ms, p99 {_ms(d.p99_ms)} ms "
            f"({ratio} x the {DELIVERY_AIM_MS:g} ms aim), max {_ms(d.max_ms)} ms",
            "  of which Kafka timestamp -> the gateway's feed: "
            + (
                "none counted"
                if d.feed_p50_s is None or d.feed_p99_s is None
                else f"p50 <= {1000 * d.feed_p50_s:g} ms, p99 <= {1000 * d.feed_p99_s:g} ms"
            ),
            "  cores busy meanwhile: "
            + ", ".join(f"{name} {busy:.2f}" for name, busy in d.cores.items()),
            "  views: "
            + (
                "not caught up within a minute of the last booking"
                if d.views_behind_s is None
                else f"caught up {d.views_behind_s:.1f} s after the last booking, accepted -> "
                f"visible p99 <= {d.views_p99_s:g} s"
            ),
        ]
    return "\n".join(lines)
