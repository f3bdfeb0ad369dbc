"""MongoDB through PyMongo's native asyncio API (Motor is deprecated in its favour)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import AsyncMongoClient

Document = dict[str, Any]

# A unique index refusing a write, as PyMongo itself tells it (11001 and 12582 are the codes
# older servers gave it).
DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})


def is_duplicate_key(write_error: Mapping[str, Any]) -> bool:
    """Whether one of a write's ``writeErrors`` is a unique index refusing the document."""
    return write_error.get("code") in DUPLICATE_KEY_CODES


def make_mongo_client(uri: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        uri,
        uuidRepresentation="standard",
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
    )


def unsafe_keys(doc: Mapping[str, Any]) -> list[str]:
    """Keys that would be operators or paths to MongoDB (``$x``, ``a.b``), at any depth."""
    found: list[str] = []
    for key, value in doc.items():
        if key.startswith("$") or "." in key:
            found.append(key)
        if isinstance(value, Mapping):
            found.extend(f"{key}.{k}" for k in unsafe_keys(value))
    return found
