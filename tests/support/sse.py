"""A text/event-stream client for the tests that read push over real HTTP (e2e, chaos)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.auth import bearer

WAIT = 60.0  # a fail-safe: a stream that never sends fails the test instead of hanging it


@dataclass
class Event:
    event: str | None
    id: str | None
    data: Any


class Reader:
    """A text/event-stream read line by line, as an EventSource reads it; each event is
    awaited ``wait`` seconds at most (heartbeats do not count)."""

    def __init__(self, response: httpx.Response, wait: float = WAIT) -> None:
        self.response = response
        self.wait = wait
        self._lines = response.aiter_lines()

    async def next(self) -> Event:
        fields: dict[str, str] = {}
        async with asyncio.timeout(self.wait):
            async for line in self._lines:
                if line.startswith(":"):
                    continue  # a heartbeat
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()
                elif fields:
                    data = json.loads(fields["data"]) if "data" in fields else None
                    return Event(fields.get("event"), fields.get("id"), data)
        raise EOFError("the server ended the stream")

    async def statuses_until_end(self) -> list[str]:
        statuses = []
        while True:
            try:
                statuses.append((await self.next()).data["status"])
            except EOFError:
                return statuses


@asynccontextmanager
async def events(
    url: str, who: str, last_event_id: str | None = None, *, wait: float = WAIT
) -> AsyncIterator[Reader]:
    headers = bearer(who, "bookings:read bookings:write")
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=wait)) as http,
        http.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Reader(response, wait)
