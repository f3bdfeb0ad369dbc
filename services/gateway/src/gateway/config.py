"""Gateway settings: ``BOOKIFY_GATEWAY_*`` plus the platform's (see shared.settings)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.ratelimit import storage_scheme
from shared.readmodel import DEFAULT_VIEWS_DB
from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "bookify-gateway"
    port: int = 8000
    db_name: str = "bookify_gateway"
    views_db: str = DEFAULT_VIEWS_DB

    rate_limit_per_second: float = Field(default=20.0, gt=0, description="Per principal.")
    rate_limit_burst: int = Field(
        default=40, ge=1, description="Requests a principal may send at once (gateway.ratelimit)."
    )
    rate_limit_storage: str = Field(
        # Dev default: the redis-server `bookify infra up` runs. Set your own Redis in
        # production; memory:// only with a single gateway instance.
        default="redis://127.0.0.1:6379/0",
        description="Where the per-principal counts live, shared by every gateway instance: "
        "redis://[:password@]host:port/db (rediss:// for TLS), or memory:// for one instance.",
    )
    rate_limit_timeout_seconds: float = Field(
        # Redis answers in well under 1 ms, but this is wall time on the gateway's event loop:
        # in a burst of hundreds of requests a process takes a few hundred ms to come back to
        # each one, and falling back then would split the limit exactly when it matters.
        default=1.0,
        gt=0,
        description="How long a request waits for Redis before this instance's own bucket "
        "decides instead (fail open; see gateway.ratelimit).",
    )
    rate_limit_retry_seconds: float = Field(
        default=1.0, gt=0, description="After a Redis failure, how long until it is tried again."
    )
    max_body_bytes: int = Field(default=65_536, ge=1)

    publish_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits for its command's acks; longer than the "
        "producer's kafka_request_timeout_seconds, so the producer always settles first.",
    )
    kafka_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    idempotency_wait_seconds: float = Field(
        default=2.0, ge=0, description="How long a duplicate waits for the in-flight original."
    )
    retry_after_seconds: int = Field(default=1, ge=1, description="Retry-After on 503.")

    # Group commit of the accept path's inserts (gateway.adapters.group_commit).
    group_commit_max_docs: int = Field(
        default=256, ge=1, description="Documents per insert_many at most."
    )
    group_commit_delay_seconds: float = Field(
        default=0.001, ge=0, description="How long a lone insert waits for others to join it."
    )
    known_resources_max: int = Field(
        default=50_000, ge=0, description="Resource ids remembered as existing (LRU)."
    )

    # Push (gateway.push, DESIGN section 10): server-sent events fed by bookify.events.
    push_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="An idle stream sends a comment this often (proxies)."
    )
    push_max_age_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A stream still open after this long ends (the client reconnects).",
    )
    push_max_streams: int = Field(
        default=10_000, ge=1, description="Open streams per gateway process (503 past it)."
    )
    push_max_streams_per_principal: int = Field(
        default=20, ge=1, description="Open streams per principal per process (429 past it)."
    )
    push_buffer_size: int = Field(
        default=64, ge=1, description="Changes a stream may lag behind before it is dropped."
    )
    push_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After when a stream limit refuses a stream."
    )
    push_seats_interval_seconds: float = Field(
        default=0.25, ge=0, description="A seats stream sends at most one change this often."
    )
    push_resync_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A stream whose booking is still pending re-reads its view this often.",
    )
    push_replay_seconds: float = Field(
        default=60.0,
        ge=0,
        description="The feed starts this far back in bookify.events, to learn the decisions "
        "the consumer may not have projected yet.",
    )
    push_recent_max: int = Field(
        default=50_000, ge=1, description="Bookings and resources whose last change is kept."
    )

    @model_validator(mode="after")
    def _producer_settles_first(self) -> Self:
        # Were the request to stop waiting first, a command it answered 503 for could still
        # be delivered and decided: a booking the client was told did not happen.
        if self.publish_timeout_seconds <= self.kafka_request_timeout_seconds:
            raise ValueError(
                f"publish_timeout_seconds ({self.publish_timeout_seconds:g}) must exceed "
                f"kafka_request_timeout_seconds ({self.kafka_request_timeout_seconds:g}): set "
                "BOOKIFY_GATEWAY_PUBLISH_TIMEOUT_SECONDS higher"
            )
        return self

    @field_validator("rate_limit_storage")
    @classmethod
    def _known_storage(cls, url: str) -> str:
        storage_scheme(url)  # ValueError naming the accepted forms
        return url

    @property
    def ce_source(self) -> str:
        return "bookify/gateway"
