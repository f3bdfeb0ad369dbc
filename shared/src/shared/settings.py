"""The settings bases every service inherits: one pydantic-settings class per service.

Each service sets its own ``env_prefix`` (``BOOKIFY_GATEWAY_``, ``BOOKIFY_BOOKING_``, ...).
Three groups of variables are the platform's, read by every service: ``BOOKIFY_ENVIRONMENT``
(a service's own ``BOOKIFY_<SERVICE>_ENVIRONMENT`` wins over it), the ``BOOKIFY_AUTH_*`` of
:class:`shared.auth.AuthSettings` and the ``BOOKIFY_KAFKA_*`` of
:class:`shared.kafka_security.KafkaSecurity`. Outside dev and test a service refuses to start
with the development JWT secret, with one too short for HS256, or with a PLAINTEXT Kafka
unless ``BOOKIFY_KAFKA_ALLOW_PLAINTEXT=true``. Nothing else in the code base reads
``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.auth import DEV_ONLY_PREFIX, AuthSettings
from shared.kafka_security import ENV_PREFIX, KafkaSecurity, SecurityProtocol


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class Topics:
    """Topic names and consumer groups, optionally prefixed so tests and tenants can share one
    broker (a group shared across prefixes would rebalance each whenever another starts)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.commands = f"{prefix}bookify.commands"
        self.events = f"{prefix}bookify.events"
        self.dlq = f"{prefix}bookify.dlq"

    def all(self) -> tuple[str, str, str]:
        return (self.commands, self.events, self.dlq)

    def group(self, group_id: str) -> str:
        return f"{self.prefix}{group_id}"


SHARED_ENVIRONMENT_VARIABLE = "BOOKIFY_ENVIRONMENT"


HS256_MIN_SECRET_BYTES = 32  # RFC 7518 3.2: a key of at least the hash's size (256 bits)


class SharedEnvironment(PydanticBaseSettingsSource):
    """``BOOKIFY_ENVIRONMENT`` as every service's ``environment``, below its own variable."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return os.environ.get(SHARED_ENVIRONMENT_VARIABLE), field_name, False

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get(SHARED_ENVIRONMENT_VARIABLE)
        return {"environment": value} if value else {}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_", extra="ignore", frozen=True)
    # Whether it checks bearer tokens in every environment (the gateway: each client's).
    verifies_tokens: ClassVar[bool] = True

    environment: Environment = Environment.DEV
    service_name: str = "bookify"
    host: str = Field(default="127.0.0.1", description="Where the HTTP port listens.")
    port: int = Field(default=8000, ge=0, le=65535)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_request_timeout_seconds: float = Field(
        default=4.0, gt=0, description="How long the producer waits for a send's acks."
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of each topic this service creates (1 here; 3 on a real cluster).",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the topics it creates; None keeps the broker's.",
    )
    create_topics: bool = Field(
        default=True,
        description="Create missing topics at start-up; off where the cluster's operator "
        "creates them (Strimzi KafkaTopic, Terraform): the services then only check them.",
    )
    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    log_level: str = "INFO"
    log_json: bool = True
    retention_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="How long idempotency keys, accepted records, processed-event markers, "
        "notifications and ledger pointers are kept (shared.retention).",
    )
    retention_sweep_seconds: float = Field(
        default=3_600.0,
        gt=0,
        description="How often they are swept where there is no TTL index (FerretDB v1, where "
        "a sweep reads the whole collection: shared.retention).",
    )
    startup_timeout_seconds: float = Field(
        default=300.0, gt=0, description="How long start-up waits for Kafka and MongoDB."
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long /readyz waits for each dependency's ping."
    )
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        description="After SIGTERM, how long /readyz answers 503 while requests are still "
        "served, so load balancers stop sending before the listener closes (shared.runner).",
    )
    # Verifies the operators' tokens (the fault switch in every service, the API in the gateway).
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # How every Kafka client of this process authenticates and encrypts (BOOKIFY_KAFKA_*).
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier wins: arguments, the service's own variables, then the platform's.
        return (
            init_settings,
            env_settings,
            SharedEnvironment(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _replicas_that_exist(self) -> Self:
        min_insync = self.topic_min_insync_replicas
        if min_insync is not None and min_insync > self.topic_replication_factor:
            raise ValueError(
                f"topic_min_insync_replicas ({min_insync}) exceeds topic_replication_factor "
                f"({self.topic_replication_factor}): every acks=all send would fail"
            )
        return self

    @model_validator(mode="after")
    def _fail_closed(self) -> Self:
        """Outside dev and test, the token secret must be a real one where tokens are checked."""
        if not self.is_dev and not self.verifies_tokens:
            return self  # no secret given (the chart mounts it into the gateway only)
        if self.auth.jwt_public_key is None:  # with RS256 the shared secret is never used
            secret = self.auth.jwt_secret.get_secret_value()
            refuse_dev_secret(self, "BOOKIFY_AUTH_JWT_SECRET", secret)
            if not self.is_dev and len(secret.encode()) < HS256_MIN_SECRET_BYTES:
                raise ValueError(
                    f"BOOKIFY_AUTH_JWT_SECRET has {len(secret.encode())} bytes; HS256 needs at "
                    f"least {HS256_MIN_SECRET_BYTES} in environment={self.environment.value} "
                    "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        return self

    @model_validator(mode="after")
    def _no_plaintext_kafka(self) -> Self:
        """Outside dev and test, Kafka without TLS or SASL only when the operator says so."""
        protocol = self.kafka.security_protocol
        if (
            not self.is_dev
            and protocol == SecurityProtocol.PLAINTEXT
            and not self.kafka.allow_plaintext
        ):
            raise ValueError(
                f"{ENV_PREFIX}SECURITY_PROTOCOL=PLAINTEXT in environment="
                f"{self.environment.value}: anyone on the network can write commands and "
                f"read bookings. Set {ENV_PREFIX}SECURITY_PROTOCOL to SASL_SSL or SSL, or "
                f"{ENV_PREFIX}ALLOW_PLAINTEXT=true for a listener you trust"
            )
        return self

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def is_dev(self) -> bool:
        return self.environment in (Environment.DEV, Environment.TEST)


class SubscriberSettings(ServiceSettings):
    """A service that consumes a topic: its consumer group and its retry policy."""

    # Its only token-checked route is the fault switch, which answers 404 outside dev and
    # test before it looks at a token: in prod it needs no JWT secret, and gets none.
    verifies_tokens: ClassVar[bool] = False

    group_id: str = Field(description="Consumer group; the topic prefix goes before it.")
    # A new group starts from the oldest record: a command accepted before the first worker
    # ever ran must still be decided, and a new read side must see every event.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    retry_attempts: int = Field(default=5, ge=1, description="Handler tries before the DLQ.")
    retry_base_delay: float = Field(default=0.05, ge=0)
    retry_max_delay: float = Field(default=5.0, ge=0)
    batch_max_records: int = Field(
        default=500, ge=1, le=10_000, description="Most records handled as one batch."
    )
    batch_timeout_ms: int = Field(
        default=100, ge=1, description="How long a poll waits for records when none are ready."
    )
    fetch_max_wait_ms: int = Field(
        default=25,
        ge=1,
        le=500,
        description="How long the broker may hold a fetch for partitions with nothing new.",
    )

    @property
    def group(self) -> str:
        """The consumer group as used on the broker (prefixed like the topics)."""
        return self.topics.group(self.group_id)


def refuse_dev_secret(settings: ServiceSettings, name: str, value: str) -> None:
    """Fail fast when a clearly-marked development default reaches a real environment."""
    if not settings.is_dev and value.startswith(DEV_ONLY_PREFIX):
        raise ValueError(
            f"{name} still has its development default; set a real secret for "
            f"environment={settings.environment.value}"
        )
