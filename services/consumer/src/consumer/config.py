"""The consumer's settings: environment variables prefixed ``BOOKIFY_CONSUMER_``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.readmodel import DEFAULT_VIEWS_DB
from shared.settings import SubscriberSettings


class ConsumerSettings(SubscriberSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_CONSUMER_", extra="ignore", frozen=True)

    service_name: str = "bookify-consumer"
    port: int = 8002
    views_db: str = DEFAULT_VIEWS_DB
    group_id: str = Field(
        default="bookify-consumer", description="Consumer group; the topic prefix goes before it."
    )
    lag_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often consumer lag is sampled for /metrics."
    )
