"""The service runtime every process is built on: deps, handlers, readiness, the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from aiokafka.errors import KafkaConnectionError
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from shared.events import EVENT_TYPES, Message, ResourceCreated, encode, utcnow
from shared.faults import FaultSettings
from shared.kafka import raw_body
from shared.messaging import PolicyMetrics
from shared.mongo import Document, make_mongo_client
from shared.service import (
    NotStartedError,
    ReadinessCheck,
    ServiceRuntime,
    StartupError,
    standard_readiness,
)
from shared.settings import SubscriberSettings
from tests.support.service import never_connect


class Settings(SubscriberSettings):
    group_id: str = "unit"
    retry_attempts: int = 1
    retry_base_delay: float = 0.0


@dataclass
class Deps:
    seen: list[Message] = field(default_factory=list)
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)


def runtime_with(deps: Deps, **settings: object) -> ServiceRuntime[Settings, Deps, PolicyMetrics]:
    def metrics(registry: CollectorRegistry) -> PolicyMetrics:
        return PolicyMetrics(registry, "unit")

    runtime = ServiceRuntime(
        Settings(topic_prefix=f"unit-{uuid4().hex[:8]}.", **settings),  # type: ignore[arg-type]
        metrics=metrics,
        connect=never_connect,
        overrides=deps,
    )

    def recorder(d: Deps) -> object:
        async def record(message: Message) -> None:
            d.seen.append(message)

        return record

    runtime.subscribe(
        runtime.settings.topics.events,
        recorder,  # type: ignore[arg-type]
        known_types=EVENT_TYPES,
        metrics=runtime.metrics,
        title="unit",
        description="records what it is handed",
    )
    return runtime


def created() -> ResourceCreated:
    return ResourceCreated(
        event_id=uuid4(),
        command_id=uuid4(),
        resource_id=uuid4(),
        accepted_at=utcnow(),
        name="Hall",
        capacity=3,
        available=3,
        version=1,
    )


async def test_the_deps_exist_only_while_the_runtime_runs() -> None:
    deps = Deps()
    runtime = runtime_with(deps)
    with pytest.raises(NotStartedError):
        _ = runtime.deps
    async with runtime.running() as running:
        assert running is deps
        assert runtime.deps is deps
    with pytest.raises(NotStartedError):
        _ = runtime.deps


async def test_a_subscriber_hands_each_message_to_the_handler_built_from_the_running_deps() -> None:
    deps = Deps()
    runtime = runtime_with(deps)
    event = created()
    value, headers = encode(event, source="test")
    async with TestKafkaBroker(runtime.broker), runtime.running():
        await runtime.broker.publish(value, runtime.settings.topics.events, headers=headers)
    assert [m.message_id for m in deps.seen] == [event.message_id]


async def test_a_message_before_the_deps_are_connected_fails_and_is_dead_lettered() -> None:
    deps = Deps()
    runtime = runtime_with(deps)
    dead: list[bytes] = []

    @runtime.broker.subscriber(runtime.settings.topics.dlq, decoder=raw_body)
    async def capture(body: bytes) -> None:
        dead.append(body)

    value, headers = encode(created(), source="test")
    async with TestKafkaBroker(runtime.broker):  # the broker runs, the runtime does not
        await runtime.broker.publish(value, runtime.settings.topics.events, headers=headers)
    assert deps.seen == []
    assert len(dead) == 1
    failures = runtime.registry.get_sample_value(
        "bookify_handler_failures_total", {"service": "unit", "error_type": "NotStartedError"}
    )
    assert failures == 2  # the batch's attempt, then the message's one attempt alone


async def test_the_fault_switch_applies_before_the_handler_on_every_attempt() -> None:
    deps = Deps()
    runtime = runtime_with(deps)
    runtime.faults.update(FaultSettings(poison_rate=1.0))
    value, headers = encode(created(), source="test")
    async with TestKafkaBroker(runtime.broker), runtime.running():
        await runtime.broker.publish(value, runtime.settings.topics.events, headers=headers)
    assert deps.seen == []
    # The batch's attempt, then every attempt of the message alone.
    assert runtime.faults.injected["poison"] == 1 + runtime.settings.retry_attempts


async def test_readiness_runs_every_check_and_a_hung_one_is_false_after_the_timeout() -> None:
    async def up() -> bool:
        return True

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    async def fails() -> bool:
        raise ConnectionError("refused")

    deps = Deps(readiness={"up": up, "hangs": hangs, "fails": fails})
    runtime = runtime_with(deps, readiness_timeout_seconds=0.05)
    async with runtime.running():
        assert await runtime.readiness() == {"up": True, "hangs": False, "fails": False}


async def test_the_standard_checks_report_kafka_and_mongo_down_when_nothing_listens() -> None:
    # Nothing listens on port 9 (discard): the real pings must answer False, not raise or hang.
    deps = Deps()
    runtime = runtime_with(
        deps, kafka_bootstrap_servers="127.0.0.1:9", readiness_timeout_seconds=0.3
    )
    mongo: AsyncMongoClient[Document] = make_mongo_client("mongodb://127.0.0.1:9/")
    deps.readiness = standard_readiness(runtime, mongo)
    try:
        async with runtime.running():
            assert await runtime.readiness() == {"kafka": False, "mongodb": False}
    finally:
        await mongo.close()


class Flaky:
    """A ``connect`` that finds Kafka down ``downs`` times (as a fresh machine does), then up."""

    def __init__(self, downs: int) -> None:
        self.downs = downs
        self.attempts = 0

    @asynccontextmanager
    async def __call__(
        self, runtime: object, mongo: AsyncMongoClient[Document]
    ) -> AsyncIterator[Deps]:
        self.attempts += 1
        if self.attempts <= self.downs:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")
        yield Deps()


def runtime_connecting(
    connect: Flaky, **settings: object
) -> ServiceRuntime[Settings, Deps, PolicyMetrics]:
    return ServiceRuntime(
        Settings(**settings),  # type: ignore[arg-type]
        metrics=lambda registry: PolicyMetrics(registry, "unit"),
        connect=connect,  # type: ignore[arg-type]
    )


async def test_start_up_waits_for_its_dependencies_instead_of_exiting() -> None:
    connect = Flaky(downs=2)
    runtime = runtime_connecting(connect, startup_timeout_seconds=30)

    async with runtime.running() as deps:
        assert runtime.deps is deps
    assert connect.attempts == 3


async def test_start_up_gives_up_after_its_timeout_with_an_error_naming_the_fix() -> None:
    connect = Flaky(downs=1_000)
    runtime = runtime_connecting(connect, startup_timeout_seconds=0.3)

    with pytest.raises(StartupError, match="bookify infra up"):
        async with runtime.running():
            pass  # pragma: no cover - never started
    assert connect.attempts >= 2
