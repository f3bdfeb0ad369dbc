"""Booking service settings: environment variables prefixed ``BOOKIFY_BOOKING_``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.messaging import RetryPolicy
from shared.settings import ServiceSettings


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_BOOKING_", extra="ignore", frozen=True)

    service_name: str = "bookify-booking"
    port: int = 8001
    db_name: str = "bookify_booking"
    group_id: str = Field(
        default="bookify-booking", description="Consumer group; the topic prefix goes before it."
    )
    # A new group starts from the oldest command: a command accepted before the first
    # booking worker ever ran must still be decided.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    retry_attempts: int = Field(default=5, ge=1, description="Handler tries before the DLQ.")
    retry_base_delay: float = Field(default=0.05, ge=0)
    retry_max_delay: float = Field(default=5.0, ge=0)
    append_attempts: int = Field(
        default=50, ge=1, description="Reload-and-redecide rounds after losing a seq race."
    )
    readiness_timeout: float = Field(default=2.0, gt=0)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts,
            base_delay=self.retry_base_delay,
            max_delay=self.retry_max_delay,
        )
