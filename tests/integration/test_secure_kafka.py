"""The platform on a Kafka secured as a real cluster is: a SASL_SSL listener (SCRAM-SHA-512,
a certificate signed by a CA made for the test) and the StandardAuthorizer with the ACLs of
bookify_platform.infra.kafka_secure.bookify_acls, on the local broker (a JVM, whatever
BOOKIFY_TEST_INFRA says: the docker and external providers have no such listener).

Every client here is built by the services' own factories (shared.kafka) from
shared.kafka_security.KafkaSecurity, as in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from asgi_lifespan import LifespanManager

from bookify_platform.infra.kafka import LocalKafka
from bookify_platform.infra.kafka_secure import SecureKafka, bookify_acls, make_tls_files
from bookify_platform.secured import ADMIN_ENV, secure_platform
from bookify_platform.services import Platform
from booking.bootstrap import bootstrap as booking_bootstrap
from booking.config import BookingSettings
from gateway.app import create_app as create_gateway_app
from gateway.config import GatewaySettings
from shared.kafka import ensure_topics, make_admin, make_consumer, make_producer
from shared.kafka_security import KafkaSecurity, refusal
from shared.service import StartupError
from shared.settings import ServiceSettings, Topics
from tests.conftest import MongoServer, local_kafka
from tests.otlp import OtlpReceiver
from tests.stack import Api, new_stack_config

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SecureBroker:
    bootstrap_servers: str
    server: LocalKafka

    @property
    def ca_file(self) -> Path:
        return self.server.tls.ca_cert

    def login(self, user: str, *, password: str | None = None) -> KafkaSecurity:
        assert self.server.secure is not None
        return self.server.secure.client(user, self.ca_file, password=password)

    def settings(self, user: str, topics: Topics, **overrides: Any) -> ServiceSettings:
        return ServiceSettings.model_validate(
            {
                "kafka_bootstrap_servers": self.bootstrap_servers,
                "topic_prefix": topics.prefix,
                "topic_partitions": 1,
                "kafka": self.login(user),
                "service_name": f"bookify-{user}",
                **overrides,
            }
        )

    def booking(self, topics: Topics, login: KafkaSecurity, **overrides: Any) -> BookingSettings:
        """Booking's settings on this broker, logged in with ``login``."""
        return BookingSettings.model_validate(
            {
                "kafka_bootstrap_servers": self.bootstrap_servers,
                "topic_prefix": topics.prefix,
                "topic_partitions": 1,
                "kafka": login,
                **overrides,
            }
        )

    async def platform_topics(self, topics: Topics, *, partitions: int = 1) -> None:
        """Topics as the operator makes them (no service may create one) and the ACLs."""
        await asyncio.to_thread(self.server.grant, bookify_acls(topics))
        await ensure_topics(self.settings("admin", topics, topic_partitions=partitions))


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with local_kafka(tmp_path_factory, secure=SecureKafka()) as infra:
        yield SecureBroker(infra.kafka.endpoint, infra.kafka)


@pytest.fixture
async def topics(secure_kafka: SecureBroker, unique_id: str) -> AsyncIterator[Topics]:
    topics = Topics(f"{unique_id}.")
    await secure_kafka.platform_topics(topics)
    yield topics
    admin = make_admin(secure_kafka.settings("admin", topics))
    await admin.start()
    try:
        await admin.delete_topics(list(topics.all()))
    finally:
        await admin.close()


async def test_a_command_goes_from_the_gateways_producer_to_bookings_consumer(
    secure_kafka: SecureBroker, topics: Topics
) -> None:
    gateway = secure_kafka.settings("gateway", topics, create_topics=False)
    await ensure_topics(gateway)  # describes and checks them as the gateway

    producer = make_producer(gateway, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topics.commands, b"a command", key=b"resource-1")
    finally:
        await producer.stop()

    booking = secure_kafka.settings("booking", topics)
    consumer = make_consumer(
        booking,
        topics.commands,
        group_id=topics.group("bookify-booking"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        records: list[Any] = []
        while not records:
            assert time.monotonic() < deadline, "the command never reached booking's consumer"
            batches = await consumer.getmany(timeout_ms=500)
            records = [r for batch in batches.values() for r in batch]
        await consumer.commit()  # the group's READ ACL at work
    finally:
        await consumer.stop()
    assert [(r.key, r.value) for r in records] == [(b"resource-1", b"a command")]


@pytest.mark.parametrize("user", ["consumer", "booking"])
async def test_a_principal_without_write_on_commands_cannot_publish_one(
    secure_kafka: SecureBroker, topics: Topics, user: str
) -> None:
    producer = make_producer(secure_kafka.settings(user, topics), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.commands, b"forged command")
    finally:
        await producer.stop()

    admin = secure_kafka.settings("admin", topics)
    consumer = make_consumer(admin, topics.commands, auto_offset_reset="earliest")
    await consumer.start()
    try:
        # Nothing reached the topic: its end is still its start.
        [partition] = consumer.assignment()
        assert (await consumer.end_offsets([partition]))[partition] == 0
    finally:
        await consumer.stop()


async def test_a_wrong_password_stops_start_up_with_the_cause_at_once(
    secure_kafka: SecureBroker, topics: Topics
) -> None:
    runtime = booking_bootstrap(
        secure_kafka.booking(
            topics,
            secure_kafka.login("booking", password="not-the-password"),
            startup_timeout_seconds=120,  # a refusal must not wait for it
        )
    )
    started = time.monotonic()

    with pytest.raises(StartupError) as refused:
        async with runtime.running():
            pytest.fail("booking started with a wrong password")

    assert time.monotonic() - started < 60, "start-up retried instead of naming the refusal"
    assert "SASL authentication failed for SASL_SSL as 'booking' (SCRAM-SHA-512)" in str(
        refused.value
    )
    assert "wrong username or password" in str(refused.value)


async def test_a_broker_certificate_from_an_untrusted_ca_is_named(
    secure_kafka: SecureBroker, tmp_path: Path
) -> None:
    other_ca = make_tls_files(tmp_path / "other", common_name="someone else").ca_cert
    security = secure_kafka.login("gateway").model_copy(update={"ssl_ca_file": other_ca})

    admin = make_admin(
        ServiceSettings(kafka_bootstrap_servers=secure_kafka.bootstrap_servers, kafka=security)
    )
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()
    cause = await refusal(secure_kafka.bootstrap_servers, security)

    assert cause is not None
    assert cause.startswith("TLS: the broker's certificate is not trusted")
    assert "set BOOKIFY_KAFKA_SSL_CA_FILE" in cause
    # The right CA passes the same check.
    assert await refusal(secure_kafka.bootstrap_servers, secure_kafka.login("gateway")) is None


async def test_the_gateways_readyz_says_kafka_refuses_it_and_why(
    secure_kafka: SecureBroker, topics: Topics, mongo: MongoServer
) -> None:
    settings = GatewaySettings(
        kafka_bootstrap_servers=secure_kafka.bootstrap_servers,
        topic_prefix=topics.prefix,
        mongo_uri=mongo.uri,
        rate_limit_storage="memory://",
        kafka=secure_kafka.login("gateway", password="stale-password"),
    )
    app = create_gateway_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://gw") as http,
    ):
        response = await http.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"mongodb": True, "kafka": False}
    assert "SASL authentication failed" in body["causes"]["kafka"]
    assert "kafka refuses this service: SASL authentication failed" in body["detail"]


async def test_a_booking_is_confirmed_end_to_end_over_sasl_ssl_with_acls(
    secure_kafka: SecureBroker,
    mongo: MongoServer,
    otlp: OtlpReceiver,
    tmp_path: Path,
) -> None:
    plain = new_stack_config(secure_kafka, mongo, otlp)
    # As `bookify up --kafka-security sasl_ssl` prepares the platform: ACLs, topics, logins.
    logins = await asyncio.to_thread(
        secure_platform, secure_kafka.server, tmp_path, Topics(plain.topic_prefix)
    )
    config = dataclasses.replace(plain, service_env=logins)
    assert (tmp_path / ADMIN_ENV).exists()

    with Platform(config, tmp_path / f"stack-{uuid.uuid4().hex[:6]}") as platform:
        async with httpx.AsyncClient(base_url=platform["gateway"].url, timeout=30) as http:
            api = Api(http)
            resource = await api.create_resource(capacity=1)
            response = await api.book(resource, "alice")
            assert response.status_code == 202, response.text
            booking = await api.wait_terminal(response.json()["id"], "alice")
            assert booking["status"] == "confirmed"
            assert await api.available(resource) == 0


async def test_a_missing_read_acl_stops_start_up_naming_it(
    secure_kafka: SecureBroker, topics: Topics, mongo: MongoServer
) -> None:
    # The consumer's login may not read commands nor join booking's group. Its store is the
    # test's own (the default would be a dev stack's, there or not).
    login = secure_kafka.login("consumer")
    runtime = booking_bootstrap(secure_kafka.booking(topics, login, mongo_uri=mongo.uri))

    with pytest.raises(StartupError) as refused:
        async with runtime.running():
            pytest.fail("booking started without READ on its group")

    assert "not authorized: GroupAuthorizationFailedError" in str(refused.value)
    assert f"{topics.group('bookify-booking')}); consumer lacks an ACL" in str(refused.value)
