"""`bookify bench decider | projector | gateway`: one stage alone, beside its ceiling.

Not tests: they print figures. Each benchmark fills a topic of its own (a fresh topic prefix)
with N messages first, then starts the one service that consumes it as a real process
(``python -m booking`` or ``python -m consumer``, configured like ``bookify up`` does) and
watches the service's consumer group commit its way to the end of the topic. The drain rate
is the records committed per second between the group's first commit and its last.

The decider's and projector's ceiling is the same N records drained by a bare aiokafka
consumer (``getmany`` and one commit per batch) in the same run: what Kafka itself gives this
machine, so the ratio says what the stage costs on top of reading its input. The gateway's
is a bare FastAPI endpoint answering 202 under the same offered rate (``bench_ceiling``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from bookify_bench.pipeline import (
    CONNECTIONS,
    PRINCIPALS,
    bench_ceiling,
    create_resource,
    principals,
)
from bookify_platform.infra.process import free_port
from bookify_platform.services import Platform, PlatformConfig, ServiceName
from loadtests.openmodel import HttpClient, run_open_model
from loadtests.recorder import process_cpu_clock
from shared.events import (
    BookingConfirmed,
    CreateResource,
    Message,
    RequestBooking,
    ResourceCreated,
    encode,
)
from shared.kafka_security import kafka_client_options
from shared.settings import Topics

SOURCE = "bookify/bench"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StageConfig:
    kafka_bootstrap: str
    mongo_uri: str
    messages: int
    resources: int
    run_dir: Path
    partitions: int = 3  # as the services create them (topic_partitions)
    timeout: float = 300.0


@dataclass(frozen=True)
class DrainFigures:
    stage: str
    resources: int
    messages: int
    drained: int
    seconds: float
    ceiling_per_second: float

    @property
    def per_second(self) -> float:
        return self.drained / self.seconds if self.seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.per_second / self.ceiling_per_second if self.ceiling_per_second else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": self.per_second, "ratio": self.ratio}


def booking_commands(messages: int, resources: int) -> list[Message]:
    """One CreateResource per resource (room for every booking), then the bookings, spread."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(resources)]
    capacity = min(100_000, messages // resources + 1)
    creates: list[Message] = [
        CreateResource(
            command_id=uuid.uuid4(),
            principal="bench-admin",
            accepted_at=now,
            resource_id=rid,
            name=f"bench-{i}",
            capacity=capacity,
        )
        for i, rid in enumerate(ids)
    ]
    bookings: list[Message] = [
        RequestBooking(
            command_id=uuid.uuid4(),
            principal=f"bench-{i % 2000}",
            accepted_at=now,
            booking_id=uuid.uuid4(),
            resource_id=ids[i % resources],
            quantity=1,
        )
        for i in range(messages - resources)
    ]
    return creates + bookings


def booking_events(messages: int, resources: int) -> list[Message]:
    """What booking publishes for :func:`booking_commands`: the resources, then confirmations."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(resources)]
    per_resource = messages // resources + 1
    capacity = min(100_000, per_resource)
    events: list[Message] = [
        ResourceCreated(
            event_id=uuid.uuid4(),
            command_id=uuid.uuid4(),
            resource_id=rid,
            accepted_at=now,
            name=f"bench-{i}",
            capacity=capacity,
            available=capacity,
            version=1,
        )
        for i, rid in enumerate(ids)
    ]
    taken = [0] * resources
    for i in range(messages - resources):
        r = i % resources
        taken[r] += 1
        events.append(
            BookingConfirmed(
                event_id=uuid.uuid4(),
                command_id=uuid.uuid4(),
                resource_id=ids[r],
                accepted_at=now,
                booking_id=uuid.uuid4(),
                principal=f"bench-{i % 2000}",
                quantity=1,
                available=max(0, capacity - taken[r]),
                version=taken[r] + 1,
            )
        )
    return events


async def fill(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    """Produce every message at once (aiokafka batches them), keyed by resource as usual."""
    producer = AIOKafkaProducer(**kafka_client_options(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = []
        for message in messages:
            value, headers = encode(message, source=SOURCE)
            sends.append(
                await producer.send(
                    topic,
                    value=value,
                    key=str(message.partition_key).encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def kafka_ceiling(bootstrap: str, topic: str, count: int, within: float) -> float:
    """Records/s a bare consumer group drains from ``topic``, committing once per batch."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client_options(bootstrap),
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen, started = 0, None
        deadline = time.monotonic() + within
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if batches and started is None:
                started = time.monotonic()
            seen += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit()
        elapsed = time.monotonic() - started if started is not None else 0.0
        return seen / elapsed if elapsed > 0 else 0.0
    finally:
        await consumer.stop()


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def watch_drain(
    bootstrap: str, group: str, topic: str, total: int, within: float, progress: Progress
) -> tuple[int, float]:
    """(records committed after the first commit, seconds from the first commit to the last)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap))
    await admin.start()
    try:
        first: tuple[int, float] | None = None
        last = (0, time.monotonic())
        deadline = time.monotonic() + within
        reported = time.monotonic()
        while time.monotonic() < deadline:
            done = await committed(admin, group, topic)
            now = time.monotonic()
            if done > 0 and first is None:
                first = (done, now)
            if done > last[0]:
                last = (done, now)
            if now - reported >= 5:
                progress(f"  {done}/{total} committed")
                reported = now
            if done >= total:
                break
            await asyncio.sleep(0.05)
        if first is None:
            return 0, 0.0
        return last[0] - first[0], last[1] - first[1]
    finally:
        await admin.close()


async def bench_stage(
    stage: ServiceName,
    config: StageConfig,
    progress: Progress = print,
) -> DrainFigures:
    """Fill the stage's input topic, measure Kafka's ceiling on it, then the stage itself."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    topic, group_id, make = {
        "booking": (topics.commands, "bookify-booking", booking_commands),
        "consumer": (topics.events, "bookify-consumer", booking_events),
    }[stage]
    messages = make(config.messages, config.resources)
    admin = AIOKafkaAdminClient(**kafka_client_options(config.kafka_bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, config.partitions, 1) for t in topics.all()])
    finally:
        await admin.close()

    progress(f"{stage}: producing {len(messages)} messages to {topic}")
    await fill(config.kafka_bootstrap, topic, messages)
    ceiling = await kafka_ceiling(config.kafka_bootstrap, topic, len(messages), config.timeout)
    progress(f"{stage}: Kafka drains {ceiling:,.0f} records/s here; starting {stage}")

    db_prefix = prefix.replace(".", "_").replace("-", "_")
    platform_config = PlatformConfig(
        kafka_bootstrap=config.kafka_bootstrap,
        mongo_uri=config.mongo_uri,
        ports={stage: free_port()},
        topic_prefix=prefix,
        db_prefix=db_prefix,
        environment="test",
        extra_env={"OTEL_SDK_DISABLED": "true", f"BOOKIFY_{stage.upper()}_LOG_LEVEL": "WARNING"},
    )
    platform = Platform(platform_config, config.run_dir, names=(stage,), progress=progress)
    try:
        platform.start()
        drained, seconds = await watch_drain(
            config.kafka_bootstrap,
            topics.group(group_id),
            topic,
            len(messages),
            config.timeout,
            progress,
        )
    finally:
        platform.stop()
        await drop_databases(config.mongo_uri, db_prefix)
        await delete_topics(config.kafka_bootstrap, topics)
    return DrainFigures(stage, config.resources, len(messages), drained, seconds, ceiling)


async def drop_databases(mongo_uri: str, db_prefix: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        for name in await client.list_database_names():
            if name.startswith(db_prefix):
                await client.drop_database(name)
    finally:
        await client.close()


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(list(topics.all()))
    finally:
        await admin.close()


def drain_report(figures: Sequence[DrainFigures]) -> str:
    lines = [
        f"{'stage':10}{'resources':>10}{'messages':>10}{'drained/s':>12}{'Kafka/s':>12}{'ratio':>8}"
    ]
    for f in figures:
        lines.append(
            f"{f.stage:10}{f.resources:>10}{f.messages:>10}{f.per_second:>12,.0f}"
            f"{f.ceiling_per_second:>12,.0f}{f.ratio:>8.3f}"
        )
    return "\n".join(lines)


SATURATED = 0.97  # of the offered rate: below it, the server (not the offer) set the pace


@dataclass(frozen=True)
class GatewayFigures:
    accepted_per_second: float
    ceiling_per_second: float
    offered: float
    accepted: int
    other_statuses: dict[int, int]
    accept_p99_ms: float | None
    duration: float  # seconds of each schedule
    # Each server's own CPU time while its schedule ran: what a 202 costs it, so that a
    # change to the gateway can be judged by its CPU, not only by the 202s/s it allows.
    gateway_cpu_s: float
    ceiling_cpu_s: float

    @property
    def ratio(self) -> float:
        return self.accepted_per_second / self.ceiling_per_second if self.ceiling_per_second else 0

    @property
    def cpu_ms_per_accept(self) -> float | None:
        return 1000 * self.gateway_cpu_s / self.accepted if self.accepted else None

    @property
    def ceiling_cpu_ms_per_accept(self) -> float | None:
        answered = self.ceiling_per_second * self.duration
        return 1000 * self.ceiling_cpu_s / answered if answered else None

    @property
    def gateway_cores(self) -> float:
        """The gateway's CPU per second of schedule: near 1, its own CPU set the pace; well
        below, it was waiting (on its stores, or for requests)."""
        return self.gateway_cpu_s / self.duration

    @property
    def ceiling_cores(self) -> float:
        return self.ceiling_cpu_s / self.duration

    @property
    def ceiling_saturated(self) -> bool:
        """False when the bare endpoint took (nearly) all it was offered: its figure is then
        the offered rate, not its ceiling, and the ratio flatters the gateway."""
        return self.ceiling_per_second < SATURATED * self.offered

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ratio": self.ratio,
            "ceiling_saturated": self.ceiling_saturated,
            "cpu_ms_per_accept": self.cpu_ms_per_accept,
            "ceiling_cpu_ms_per_accept": self.ceiling_cpu_ms_per_accept,
            "gateway_cores": self.gateway_cores,
            "ceiling_cores": self.ceiling_cores,
        }


async def bench_gateway(
    kafka_bootstrap: str,
    mongo_uri: str,
    run_dir: Path,
    *,
    rate: float,
    duration: float,
    progress: Progress = print,
) -> GatewayFigures:
    """The gateway alone (no booking, no consumer: nothing reads the commands it publishes)
    offered more bookings than it can take, with an Idempotency-Key each; then the bare
    FastAPI 202 under the same offer. Both figures are completed 202s per second."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    db_prefix = prefix.replace(".", "_").replace("-", "_")
    platform_config = PlatformConfig(
        kafka_bootstrap=kafka_bootstrap,
        mongo_uri=mongo_uri,
        ports={"gateway": free_port()},
        topic_prefix=prefix,
        db_prefix=db_prefix,
        environment="test",
        extra_env={
            "OTEL_SDK_DISABLED": "true",
            "BOOKIFY_GATEWAY_LOG_LEVEL": "WARNING",
            "BOOKIFY_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
            "BOOKIFY_GATEWAY_RATE_LIMIT_BURST": "1000000",
        },
    )
    platform = Platform(platform_config, run_dir, names=("gateway",), progress=progress)
    try:
        platform.start()
        url = platform["gateway"].url
        async with HttpClient(url, max_connections=CONNECTIONS) as client:
            resource = await create_resource(client, 100_000)
            crowd = principals(PRINCIPALS)

            async def book(i: int) -> int:
                reply = await client.post(
                    "/v1/bookings",
                    json={"resource_id": resource, "quantity": 1},
                    headers={**crowd[i % PRINCIPALS].auth, "Idempotency-Key": f"bench-{i}"},
                )
                return reply.status

            await client.warm_up("/healthz")
            progress(f"gateway: offered {rate:g}/s for {duration:g} s")
            gateway_cpu = process_cpu_clock(platform["gateway"].pid)
            before = gateway_cpu()
            result = await run_open_model(book, rate=rate, duration=duration)
            gateway_cpu_s = gateway_cpu() - before
    finally:
        platform.stop()
        await drop_databases(mongo_uri, db_prefix)
        await delete_topics(kafka_bootstrap, Topics(prefix))
    progress(f"ceiling: bare FastAPI 202 offered {rate:g}/s for {duration:g} s")
    ceiling = await bench_ceiling(rate, duration, run_dir)
    accepted = result.statuses.get(202, 0)
    latency = result.latency_us
    return GatewayFigures(
        accepted_per_second=accepted / duration,
        ceiling_per_second=ceiling.result.statuses.get(202, 0) / duration,
        offered=rate,
        accepted=accepted,
        other_statuses={s: n for s, n in result.statuses.items() if s != 202},
        accept_p99_ms=latency.get_value_at_percentile(99) / 1000
        if latency.get_total_count()
        else None,
        duration=duration,
        gateway_cpu_s=gateway_cpu_s,
        ceiling_cpu_s=ceiling.server_cpu_s,
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def gateway_report(f: GatewayFigures) -> str:
    p99 = "n/a" if f.accept_p99_ms is None else f"{f.accept_p99_ms:.1f} ms"
    return "\n".join(
        [
            f"{'offered (req/s)':30}{f.offered:12,.0f}",
            f"{'gateway 202s/s':30}{f.accepted_per_second:12,.0f}",
            f"{'bare FastAPI 202s/s':30}{f.ceiling_per_second:12,.0f}",
            f"{'other statuses':30}{f.other_statuses or '-'!s:>12}",
            f"{'gateway accept p99':30}{p99:>12}",
            f"{'CPU per 202, gateway (ms)':30}{_ms(f.cpu_ms_per_accept):>12}",
            f"{'CPU per 202, bare FastAPI (ms)':30}{_ms(f.ceiling_cpu_ms_per_accept):>12}",
            f"{'cores busy, gateway':30}{f.gateway_cores:12.2f}",
            f"{'cores busy, bare FastAPI':30}{f.ceiling_cores:12.2f}",
            f"gateway = {f.ratio:.2f} x the bare-FastAPI ceiling",
        ]
        + (
            []
            if f.ceiling_saturated
            else [
                f"warning: the bare endpoint took all {f.offered:,.0f}/s offered, so that is "
                "not its ceiling and the ratio is too high: offer more with --rate"
            ]
        )
    )
