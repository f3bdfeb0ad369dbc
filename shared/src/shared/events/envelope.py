"""CloudEvents 1.0 in Kafka *binary* content mode.

The Kafka value is the JSON data; the CloudEvents attributes travel as ``ce_*`` headers.
Trace context (``traceparent``/``tracestate``/``baggage``) is added beside them by
FastStream's telemetry middleware, not here.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from shared.events.base import Message
from shared.events.commands import CancelBooking, CreateResource, RequestBooking
from shared.events.events import (
    BookingCancelled,
    BookingConfirmed,
    BookingRejected,
    ResourceCreated,
)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

COMMAND_TYPES: dict[str, type[Message]] = {
    m.ce_type: m for m in (CreateResource, RequestBooking, CancelBooking)
}
EVENT_TYPES: dict[str, type[Message]] = {
    m.ce_type: m for m in (ResourceCreated, BookingConfirmed, BookingRejected, BookingCancelled)
}
ALL_TYPES: dict[str, type[Message]] = {**COMMAND_TYPES, **EVENT_TYPES}


class MalformedMessageError(ValueError):
    """A record that no retry can fix: wrong envelope, unknown type or invalid data."""


def encode(message: Message, *, source: str) -> tuple[bytes, dict[str, str]]:
    """The Kafka value and headers for ``message``."""
    headers = {
        "ce_id": str(message.message_id),
        "ce_type": message.ce_type,
        "ce_source": source,
        "ce_time": message.time.isoformat(),
        "ce_specversion": SPEC_VERSION,
        "content-type": CONTENT_TYPE,
    }
    return message.model_dump_json().encode(), headers


def decode(
    headers: Mapping[str, str | bytes],
    value: bytes | None,
    known: Mapping[str, type[Message]] = ALL_TYPES,
) -> Message:
    """Parse a record into its model, or raise :class:`MalformedMessageError` saying why."""
    text_headers = {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in headers.items()
    }
    if text_headers.get("ce_specversion") != SPEC_VERSION:
        raise MalformedMessageError(
            f"not a CloudEvents {SPEC_VERSION} binary-mode record "
            f"(ce_specversion={text_headers.get('ce_specversion')!r})"
        )
    ce_type = text_headers.get("ce_type", "")
    model = known.get(ce_type)
    if model is None:
        raise MalformedMessageError(f"unknown ce_type {ce_type!r}")
    if not value:
        raise MalformedMessageError(f"{ce_type} record has an empty value")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        raise MalformedMessageError(f"invalid {ce_type} data: {exc}") from None
