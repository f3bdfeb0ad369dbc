"""The published message contract (shared/schemas) against the models producers use today.

The committed schemas are what consumers outside this repo were built against. A change to a
model must keep both directions working: an old consumer reads a new producer's message
(everything it requires is still there, with the same type), and a new consumer reads an old
producer's message (nothing newly required). Re-export with `bookify schemas export` only for
a compatible change; a breaking one gets a new versioned type name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.events import ALL_TYPES, Message, decode, encode
from shared.events.schemas import export_schemas, json_schemas
from tests.messages import sample_messages

PUBLISHED = Path(__file__).parents[2] / "shared" / "schemas"


def published() -> dict[str, dict[str, Any]]:
    return {
        json.loads(p.read_text())["x-ce-type"]: json.loads(p.read_text())
        for p in sorted(PUBLISHED.glob("*.schema.json"))
    }


def test_every_published_type_is_still_produced() -> None:
    assert set(published()) <= set(ALL_TYPES)
    assert set(published()) == {m.ce_type for m in sample_messages()}


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: m.ce_type)
def test_old_consumer_reads_what_a_new_producer_writes(message: Message) -> None:
    schema = published()[message.ce_type]
    value, _ = encode(message, source="test")
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [e.message for e in validator.iter_errors(json.loads(value))]
    assert errors == []


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: m.ce_type)
def test_new_consumer_reads_what_an_old_producer_wrote(message: Message) -> None:
    schema = published()[message.ce_type]
    # An old producer sent only what the published schema required.
    full = json.loads(message.model_dump_json())
    minimal = {k: v for k, v in full.items() if k in schema.get("required", [])}
    _, headers = encode(message, source="old-producer")
    decoded = json.loads(decode(headers, json.dumps(minimal).encode()).model_dump_json())
    assert {k: decoded[k] for k in minimal} == minimal


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: m.ce_type)
def test_fields_added_by_a_future_producer_are_ignored(message: Message) -> None:
    value, headers = encode(message, source="future-producer")
    future = {**json.loads(value), "added_in_v1_1": {"anything": [1, 2]}}
    assert decode(headers, json.dumps(future).encode()) == message


def test_export_writes_one_valid_schema_per_type(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{t}.schema.json" for t in ALL_TYPES)
    for path in written:
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    assert json_schemas().keys() == ALL_TYPES.keys()
