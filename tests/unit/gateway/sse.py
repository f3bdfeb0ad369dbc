"""Server-sent events from an ASGI app in-process, read as they are sent.

httpx's ASGITransport returns only once the app has sent the whole body, which a stream
never does; this drives the app itself: one GET, its body parsed into events as each chunk
arrives, and a client disconnect when the test leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message

WAIT = 10.0  # a fail-safe for a stream that never sends: the test fails, it does not hang


@dataclass(frozen=True)
class Sse:
    event: str | None = None
    id: str | None = None
    data: Any = None
    comment: str | None = None


def parse(block: str) -> Sse:
    fields: dict[str, str] = {}
    comments = []
    for line in block.split("\n"):
        if line.startswith(":"):
            comments.append(line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = fields[name] + "\n" + value.strip() if name in fields else value.strip()
    data = json.loads(fields["data"]) if "data" in fields else None
    return Sse(fields.get("event"), fields.get("id"), data, "\n".join(comments) or None)


class Stream:
    def __init__(self, status: int, headers: dict[str, str], chunks: asyncio.Queue[bytes | None]):
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._buffer = ""
        self.ended = False

    async def next(self, *, comments: bool = False) -> Sse:
        """The next event (heartbeat comments skipped unless ``comments``); raises
        EOFError once the server ended the stream."""
        while True:
            while "\n\n" not in self._buffer:
                if self.ended:
                    raise EOFError("the stream ended")
                async with asyncio.timeout(WAIT):
                    chunk = await self._chunks.get()
                if chunk is None:
                    self.ended = True
                else:
                    self._buffer += chunk.decode()
            block, _, self._buffer = self._buffer.partition("\n\n")
            event = parse(block)
            if comments or event.comment is None:
                return event

    async def rest(self) -> list[Sse]:
        """Every event until the server ends the stream."""
        events = []
        while True:
            try:
                events.append(await self.next())
            except EOFError:
                return events

    async def body(self) -> Any:
        """A non-stream answer (a problem) as JSON."""
        text = b""
        while (chunk := await self._chunks.get()) is not None:
            text += chunk
        return json.loads(text) if text else None


@asynccontextmanager
async def stream(app: ASGIApp, path: str, headers: dict[str, str]) -> AsyncIterator[Stream]:
    """GET ``path``; the client disconnects when the block is left."""
    requests: asyncio.Queue[Message] = asyncio.Queue()
    requests.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.set_result(message)
        elif message["type"] == "http.response.body":
            if body := message.get("body", b""):
                chunks.put_nowait(body)
            if not message.get("more_body", False):
                chunks.put_nowait(None)

    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("gateway", 80), "client": ("127.0.0.1", 5000),
    }  # fmt: skip
    task = asyncio.create_task(app(scope, requests.get, send))
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done() and not started.done():
            task.result()  # the app's own error
        start = started.result()
        response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        yield Stream(start["status"], response_headers, chunks)
    finally:
        requests.put_nowait({"type": "http.disconnect"})
        async with asyncio.timeout(WAIT):
            await task
