"""The services on the secured broker (`bookify up --kafka-security sasl_ssl`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bookify_platform.infra.fsutil import atomic_write_text
from bookify_platform.infra.kafka import LocalKafka
from bookify_platform.infra.kafka_secure import bookify_acls
from bookify_platform.services import SERVICES, ServiceName
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings, Topics

ADMIN_ENV = Path("kafka") / "admin.env"


def secure_platform(
    kafka: LocalKafka, run_dir: Path, topics: Topics
) -> dict[ServiceName, dict[str, str]]:
    """On the secured broker: the services' ACLs and topics, as an operator would make them
    (no service may create a topic); each service's login; and the admin's in
    <run dir>/kafka/admin.env, for `bookify dlq` (`set -a; . that-file; set +a`)."""
    kafka.grant(bookify_acls(topics))
    admin = kafka.client_security()
    assert admin is not None
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka.endpoint,
        kafka=admin,
        service_name="bookify-admin",
        topic_prefix=topics.prefix,
    )
    asyncio.run(ensure_topics(settings))
    env_file = run_dir / ADMIN_ENV
    atomic_write_text(env_file, "".join(f"{k}={v}\n" for k, v in admin.environment().items()))
    env_file.chmod(0o600)
    logins: dict[ServiceName, dict[str, str]] = {}
    for name in SERVICES:
        login = kafka.client_security(name)
        assert login is not None
        logins[name] = login.environment()
    return logins
