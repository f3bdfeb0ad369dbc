"""Real infrastructure for integration, e2e and chaos tests: Kafka, a MongoDB-wire server and
Redis (the gateways' shared rate limit).

One fixture layer, provider chosen by BOOKIFY_TEST_INFRA:

- ``auto`` (default): ``docker`` if a Docker engine answers a ping, else ``local``.
- ``docker``: testcontainers - Confluent cp-kafka 8.1 (Kafka 4.1, KRaft), mongo:8 as a
  single-node replica set, and redis:7.
- ``local``: bookify_platform.infra.LocalInfra - Kafka as a JVM from Maven Central jars, FerretDB
  built with Go, Debian's redis-server (``make tools``) - on free ports in a temporary run
  dir (never the dev stack's ports), tied to this pytest process so nothing outlives it.
  Installs on first use, then cached.
- ``external``: servers already running, from BOOKIFY_TEST_KAFKA_BOOTSTRAP,
  BOOKIFY_TEST_MONGO_URI and BOOKIFY_TEST_REDIS_URL.

Missing infrastructure is started, never skipped. Everything is lazy: a session only
starts Kafka, Mongo or Redis when a test asks for ``kafka``/``mongo``/``redis`` (directly or through
``topic_factory``/``mongo_db``), so tests/unit never starts anything.

Isolation between tests sharing one server: unique topic names (``t-<uuid8>-<name>``),
unique consumer group ids (use ``unique_id``), and a fresh database per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bookify_platform.infra import LocalInfra, Service, free_ports
from bookify_platform.infra.kafka_secure import SecureKafka
from shared.mongo import Document

# The services as real processes on top of these servers (e2e and chaos suites).
pytest_plugins = ["tests.stack"]

INFRA_ENV = "BOOKIFY_TEST_INFRA"
EXTERNAL_KAFKA_ENV = "BOOKIFY_TEST_KAFKA_BOOTSTRAP"
EXTERNAL_MONGO_ENV = "BOOKIFY_TEST_MONGO_URI"
EXTERNAL_REDIS_ENV = "BOOKIFY_TEST_REDIS_URL"

KAFKA_IMAGE = "confluentinc/cp-kafka:8.1.0"  # Kafka 4.1, the line infra/kafka/pom.xml pins
MONGO_IMAGE = "mongo:8"
REDIS_IMAGE = "redis:7.4"  # as compose.yaml

Provider = Literal["docker", "local", "external"]
KAFKA_ONLY: tuple[Service, ...] = ("kafka",)
MONGO_ONLY: tuple[Service, ...] = ("mongo",)
REDIS_ONLY: tuple[Service, ...] = ("redis",)


@dataclass(frozen=True)
class KafkaServer:
    bootstrap_servers: str


@dataclass(frozen=True)
class MongoServer:
    uri: str


@dataclass(frozen=True)
class RedisServer:
    url: str  # redis://host:port/0, as the gateway's rate_limit_storage takes it


# ---------------------------------------------------------------- provider selection


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within 3 s."""
    try:
        import docker  # slow to import; only needed here

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@functools.cache
def infra_provider() -> Provider:
    mode = os.environ.get(INFRA_ENV, "auto").strip().lower() or "auto"
    if mode == "auto":
        return "docker" if docker_available() else "local"
    if mode in ("docker", "local", "external"):
        return mode  # type: ignore[return-value]
    raise pytest.UsageError(f"{INFRA_ENV}={mode!r}: expected auto, docker, local or external")


def _external(env: str) -> str:
    value = os.environ.get(env, "").strip()
    if not value:
        pytest.fail(
            f"{INFRA_ENV}=external needs {EXTERNAL_KAFKA_ENV} (host:port), "
            f"{EXTERNAL_MONGO_ENV} (mongodb://...) and {EXTERNAL_REDIS_ENV} (redis://...); "
            f"{env} is not set",
            pytrace=False,
        )
    return value


# ---------------------------------------------------------------- docker provider


@contextlib.contextmanager
def _docker_kafka() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.15
        from testcontainers.kafka import KafkaContainer

    container = (
        KafkaContainer(KAFKA_IMAGE)
        .with_kraft()
        # testcontainers sets the offsets topic to RF 1 but not the transaction log,
        # whose defaults (RF 3, min ISR 2) cannot be met by one broker.
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    with container:
        yield container.get_bootstrap_server()


@contextlib.contextmanager
def _docker_mongo() -> Iterator[str]:
    """mongo:8 as a single-node replica set (transactions and change streams work)."""
    from pymongo import MongoClient
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (
        DockerContainer(MONGO_IMAGE)
        .with_command("--replSet rs0 --bind_ip_all")
        .with_exposed_ports(27017)
        .waiting_for(LogMessageWaitStrategy("Waiting for connections"))
    )
    with container:
        # The member's host is as seen inside the container; clients connect directly.
        initiate = "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"
        result = container.exec(["mongosh", "--quiet", "--eval", initiate])
        if result.exit_code != 0:
            raise RuntimeError(f"rs.initiate failed: {result.output!r}")
        host = container.get_container_host_ip()
        port = container.get_exposed_port(27017)
        uri = f"mongodb://{host}:{port}/?directConnection=true"
        client: MongoClient[Document] = MongoClient(uri, serverSelectionTimeoutMS=2000)
        try:
            deadline = time.monotonic() + 30
            while not client.admin.command("hello").get("isWritablePrimary"):
                if time.monotonic() > deadline:
                    raise RuntimeError("mongo replica set has no primary after 30 s")
                time.sleep(0.2)
        finally:
            client.close()
        yield uri


# ---------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A real Kafka broker for the whole session (started on first use)."""
    provider = infra_provider()
    if provider == "external":
        yield KafkaServer(_external(EXTERNAL_KAFKA_ENV))
    elif provider == "docker":
        with _docker_kafka() as bootstrap:
            yield KafkaServer(bootstrap)
    else:
        with local_kafka(tmp_path_factory) as infra:
            yield KafkaServer(infra.kafka.endpoint)


@contextlib.contextmanager
def local_kafka(
    tmp_path_factory: pytest.TempPathFactory, *, secure: SecureKafka | None = None
) -> Iterator[LocalInfra]:
    """The harness's broker on free ports, started (secured as ``secure`` says, if given)."""
    kafka_port, controller_port = free_ports(2)
    infra = LocalInfra(
        tmp_path_factory.mktemp("kafka-run"),
        kafka_port=kafka_port,
        controller_port=controller_port,
        services=KAFKA_ONLY,
        attached=True,
        kafka_secure=secure,
    )
    with infra:
        infra.start()
        yield infra


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A real MongoDB-wire server for the whole session (started on first use).

    Locally this is FerretDB v1: no transactions, change streams or TTL indexes; unique
    indexes are enforced (see DESIGN.md section 4 on optimistic concurrency).
    """
    provider = infra_provider()
    if provider == "external":
        yield MongoServer(_external(EXTERNAL_MONGO_ENV))
    elif provider == "docker":
        with _docker_mongo() as uri:
            yield MongoServer(uri)
    else:
        [mongo_port] = free_ports(1)
        infra = LocalInfra(
            tmp_path_factory.mktemp("mongo-run"),
            mongo_port=mongo_port,
            services=MONGO_ONLY,
            attached=True,
        )
        with infra:
            yield MongoServer(infra.start().mongo_uri)


@contextlib.contextmanager
def _docker_redis() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (
        DockerContainer(REDIS_IMAGE)
        .with_exposed_ports(6379)
        .waiting_for(LogMessageWaitStrategy("Ready to accept connections"))
    )
    with container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(6379)}/0"


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis for the whole session (started on first use): the shared rate limit."""
    provider = infra_provider()
    if provider == "external":
        yield RedisServer(_external(EXTERNAL_REDIS_ENV))
    elif provider == "docker":
        with _docker_redis() as url:
            yield RedisServer(url)
    else:
        [redis_port] = free_ports(1)
        infra = LocalInfra(
            tmp_path_factory.mktemp("redis-run"),
            redis_port=redis_port,
            services=REDIS_ONLY,
            attached=True,
        )
        with infra:
            yield RedisServer(infra.start().redis_url)


@pytest.fixture(scope="session")
async def mongo_client(mongo: MongoServer) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo.uri, tz_aware=True)
    yield client
    await client.close()


# ---------------------------------------------------------------- per-test isolation


@pytest.fixture
def unique_id() -> str:
    """A short id unique to this test, e.g. ``t-1a2b3c4d``: prefix topics, groups, ids."""
    return f"t-{uuid.uuid4().hex[:8]}"


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def topic_factory(kafka: KafkaServer, unique_id: str) -> AsyncIterator[TopicFactory]:
    """``await topic_factory("orders", partitions=3)`` -> ``"t-<uuid8>-orders"``.

    The topic exists, with a leader for every partition, when the call returns; it is
    deleted after the test.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    created: list[str] = []

    async def create(name: str = "topic", *, partitions: int = 1) -> str:
        topic = f"{unique_id}-{name}"
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
        errors = [err for _, err, *_ in response.topic_errors if err != 0]
        if errors:
            raise RuntimeError(f"create_topics({topic!r}) failed: {response.topic_errors}")
        created.append(topic)
        await _wait_for_leaders(admin, topic, partitions)
        return topic

    try:
        yield create
    finally:
        if created:
            await admin.delete_topics(created)
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, within: float = 15.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        [described] = await admin.describe_topics([topic])
        leaders = [p["leader"] for p in described["partitions"]]
        if described["error_code"] == 0 and len(leaders) == partitions and min(leaders) >= 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition: {described}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def mongo_db(
    mongo_client: AsyncMongoClient[Document], unique_id: str
) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database of its own for this test (``t_<uuid8>``), dropped afterwards."""
    name = unique_id.replace("-", "_")
    yield mongo_client[name]
    await mongo_client.drop_database(name)
