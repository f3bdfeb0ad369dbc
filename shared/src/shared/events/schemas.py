"""JSON Schema of every message type, as published to consumers outside this repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.events.envelope import ALL_TYPES


def json_schemas() -> dict[str, dict[str, Any]]:
    """``ce_type`` -> the JSON Schema of its data (the Kafka value)."""
    schemas: dict[str, dict[str, Any]] = {}
    for ce_type, model in sorted(ALL_TYPES.items()):
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:bookify:schema:{ce_type}"
        schema["x-ce-type"] = ce_type
        schemas[ce_type] = schema
    return schemas


def export_schemas(directory: Path) -> list[Path]:
    """Write one ``<ce_type>.schema.json`` per message type; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for ce_type, schema in json_schemas().items():
        path = directory / f"{ce_type}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
