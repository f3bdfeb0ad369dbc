"""Reading the gateway's server-sent events: how a load-test client learns its booking's
decision by push (``--follow push``) instead of polling, and how ``bookify bench push``
holds its streams.

:class:`EventParser` turns the bytes of a ``text/event-stream`` body, in whatever pieces they
arrive, into :class:`Event` s (the WHATWG rules the gateway's streams use: ``event``,
``data``, ``id``, comment lines ignored). Each transport feeds it: :class:`EventStream` on
asyncio (the open model, the push bench) and the Locust users on their own HTTP session.
Written here rather than taken from a library: httpx-sse and sseclient each need an HTTP
client the generator does not use (the open model's is :class:`loadtests.openmodel.HttpClient`,
chosen by measurement), and the parsing is twenty lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: str
    id: str | None


@dataclass
class EventParser:
    """An incremental ``text/event-stream`` parser: :meth:`feed` bytes, get whole events."""

    _pending: bytes = b""
    _name: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        events = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:  # a blank line ends an event (none without data, as the spec says)
                if self._data:
                    events.append(Event(self._name or "message", "\n".join(self._data), self._id))
                self._name, self._data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment: the gateway's heartbeat
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._name = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value  # the last event id stays until another replaces it
        return events


class StreamRefusedError(Exception):
    """The gateway answered the stream's request with something other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the stream was answered {status}")
        self.status = status


class EventStream:
    """One ``text/event-stream`` over its own HTTP/1.1 connection (the gateway sends every
    stream chunked), for use as ``async with``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, base_url: str, path: str, headers: Mapping[str, str] | None = None
    ) -> EventStream:
        """The stream once its 200 and header fields are read; :class:`StreamRefusedError` for
        any other answer, :class:`OSError` when the connection fails."""
        url = urlsplit(base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        fields = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"GET {url.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Accept: text/event-stream\r\n{fields}\r\n".encode("latin-1")
        )
        status_line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # the header fields: every stream is chunked, nothing else matters here
        parts = status_line.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 200:
            writer.close()
            raise StreamRefusedError(status)
        return cls(reader, writer)

    async def events(self) -> AsyncIterator[Event]:
        """Each event as it arrives, until the server ends the stream."""
        parser = EventParser()
        while True:
            size = int((await self.reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            for event in parser.feed((await self.reader.readexactly(size + 2))[:-2]):
                yield event

    def close(self) -> None:
        self.writer.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()
