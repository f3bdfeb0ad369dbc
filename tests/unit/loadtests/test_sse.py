"""Reading server-sent events (loadtests.sse): the parser on pieces as they arrive, and a
stream's opening and end over a real local socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from loadtests.sse import Event, EventParser, EventStream, StreamRefusedError

BOOKING = b'event: booking\ndata: {"status":"pending"}\nid: pending\n\n'


def test_events_split_anywhere_come_out_whole_and_once() -> None:
    wire = b": heartbeat\n\n" + BOOKING + b'event: booking\r\ndata: {"status":"confirmed"}\r\n'
    wire += b"id: confirmed\r\n\r\n"
    for cut in range(1, len(wire)):
        parser = EventParser()
        events = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
        assert events == [
            Event("booking", '{"status":"pending"}', "pending"),
            Event("booking", '{"status":"confirmed"}', "confirmed"),
        ], cut


def test_data_lines_join_and_an_event_without_data_is_not_one() -> None:
    parser = EventParser()
    events = parser.feed(b"event: reconnect\n\ndata: a\ndata:b\n\nid: 7\n\n")
    assert events == [Event("message", "a\nb", None)]
    # The last event id stays with the stream, as a browser's EventSource keeps it.
    assert parser.feed(b"data: c\n\n") == [Event("message", "c", "7")]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@asynccontextmanager
async def serve(answer: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/api", requests


async def test_a_stream_yields_its_events_until_the_server_ends_it() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    head += b"transfer-encoding: chunked\r\n\r\n"
    answer = head + chunked(b": heartbeat\n\n", BOOKING[:20], BOOKING[20:])
    async with serve(answer) as (url, requests):
        async with await EventStream.open(url, "/v1/x/events", {"Authorization": "B"}) as stream:
            events = [event async for event in stream.events()]

        assert events == [Event("booking", '{"status":"pending"}', "pending")]
        assert requests[0].startswith(b"GET /api/v1/x/events HTTP/1.1\r\n")
        assert b"\r\nAuthorization: B\r\n" in requests[0]


async def test_a_stream_answered_otherwise_than_200_is_refused_with_its_status() -> None:
    answer = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n"
    async with serve(answer) as (url, _):
        with pytest.raises(StreamRefusedError) as refused:
            await EventStream.open(url, "/v1/x/events")
        assert refused.value.status == 429
