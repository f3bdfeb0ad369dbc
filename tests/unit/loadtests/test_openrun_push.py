"""The open model's client waiting for a decision by push (``--follow push``): over a real
local socket, a stream that ends undecided is opened again with Last-Event-ID, and the
decision it then carries is the one recorded."""

from __future__ import annotations

import asyncio
import time

from loadtests.data import Pools, mint_principals
from loadtests.openmodel import HttpClient
from loadtests.openrun import Live, OpenClient
from loadtests.recorder import Recorder
from loadtests.users import PUSH

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


async def test_a_stream_that_ends_undecided_is_reopened_and_its_decision_recorded() -> None:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        status = b"pending" if len(requests) == 1 else b"rejected"
        event = b'event: booking\ndata: {"status":"%s"}\nid: %s\n\n' % (status, status)
        writer.write(HEAD + chunk(event) + b"0\r\n\r\n")  # then the server ends the stream
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    recorder = Recorder(window_s=5.0, t0=time.time())
    pools = Pools("run-1", ["r-1"], mint_principals("run-1", 1))
    async with server, HttpClient(url) as http:
        client = OpenClient(
            http, pools, recorder, errors=False, live=Live(), max_pollers=4,
            follow=PUSH, hosts=[url],
        )  # fmt: skip
        await client.wait("b-1", {"Authorization": "Bearer t"}, time.time())

    assert len(requests) == 2
    assert requests[0].startswith(b"GET /v1/bookings/b-1/events HTTP/1.1\r\n")
    assert b"Last-Event-ID" not in requests[0]
    assert b"\r\nLast-Event-ID: pending\r\n" in requests[1]
    recorder.stop()
    summary = recorder.summary()
    assert summary.endpoints["GET /v1/bookings/{id}/events"].count == 2
    assert summary.e2e is not None
    assert summary.e2e.count == 1
