from __future__ import annotations

import json

import pytest

from shared.events import COMMAND_TYPES, MalformedMessageError, Message, decode, encode
from tests.messages import sample_messages


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: m.ce_type)
def test_a_message_survives_the_kafka_round_trip(message: Message) -> None:
    value, headers = encode(message, source="bookify/test")
    assert decode(headers, value) == message


def test_headers_are_cloudevents_binary_mode() -> None:
    message = sample_messages()[1]
    value, headers = encode(message, source="bookify/gateway")
    assert headers == {
        "ce_id": str(message.message_id),
        "ce_type": "bookify.booking.request.v1",
        "ce_source": "bookify/gateway",
        "ce_time": message.time.isoformat(),
        "ce_specversion": "1.0",
        "content-type": "application/json",
    }
    assert json.loads(value)["quantity"] == 2


def test_bytes_headers_as_kafka_delivers_them_are_accepted() -> None:
    message = sample_messages()[0]
    value, headers = encode(message, source="s")
    raw = {k: v.encode() for k, v in headers.items()}
    assert decode(raw, value) == message


@pytest.mark.parametrize(
    ("change", "value", "reason"),
    [
        ({"ce_specversion": "0.3"}, None, "not a CloudEvents 1.0"),
        ({"ce_type": "bookify.nope.v1"}, None, "unknown ce_type"),
        ({}, b"", "empty value"),
        ({}, b"{not json", "invalid bookify.resource.create.v1"),
        ({}, b'{"capacity": "many"}', "invalid bookify.resource.create.v1"),
    ],
)
def test_malformed_records_say_why(
    change: dict[str, str], value: bytes | None, reason: str
) -> None:
    good_value, headers = encode(sample_messages()[0], source="s")
    with pytest.raises(MalformedMessageError, match=reason):
        decode({**headers, **change}, good_value if value is None else value)


def test_a_subscriber_only_accepts_the_types_it_knows() -> None:
    event = sample_messages()[3]
    value, headers = encode(event, source="s")
    with pytest.raises(MalformedMessageError, match="unknown ce_type"):
        decode(headers, value, COMMAND_TYPES)
