"""Booking service settings: environment variables prefixed ``BOOKIFY_BOOKING_``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import SubscriberSettings


class BookingSettings(SubscriberSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_BOOKING_", extra="ignore", frozen=True)

    service_name: str = "bookify-booking"
    port: int = 8001
    db_name: str = "bookify_booking"
    group_id: str = Field(
        default="bookify-booking", description="Consumer group; the topic prefix goes before it."
    )
    append_attempts: int = Field(
        default=50, ge=1, description="Reload-and-redecide rounds after losing a seq race."
    )
