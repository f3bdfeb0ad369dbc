"""A runtime ``connect`` for tests that pass ``overrides``: it must never be called."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def never_connect(runtime: object, mongo: object) -> AsyncIterator[Any]:
    raise AssertionError("with overrides, the runtime must not connect anything")
    yield  # pragma: no cover - unreachable, makes this a generator
