"""Gateway settings: ``BOOKIFY_GATEWAY_*`` plus the shared ``BOOKIFY_AUTH_*``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.readmodel import DEFAULT_VIEWS_DB
from shared.settings import ServiceSettings, refuse_dev_secret


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "bookify-gateway"
    port: int = 8000
    db_name: str = "bookify_gateway"
    views_db: str = DEFAULT_VIEWS_DB

    rate_limit_per_second: float = Field(default=20.0, gt=0, description="Per principal.")
    rate_limit_burst: int = Field(default=40, ge=1, description="Token bucket size.")
    max_body_bytes: int = Field(default=65_536, ge=1)

    publish_timeout_seconds: float = Field(default=5.0, gt=0)
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

    @property
    def ce_source(self) -> str:
        return "bookify/gateway"

    @model_validator(mode="after")
    def _refuse_dev_secret(self) -> Self:
        if self.auth.jwt_public_key is None:  # with RS256 the shared secret is never used
            refuse_dev_secret(
                self, "BOOKIFY_AUTH_JWT_SECRET", self.auth.jwt_secret.get_secret_value()
            )
        return self
