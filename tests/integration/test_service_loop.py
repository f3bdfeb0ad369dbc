"""The event loop the services run on (``shared.runner.SERVICE_LOOP``) lets aiokafka handle
a connection the broker reset.

On uvloop, aiokafka's next write to a connection reset under it raises RuntimeError, which
none of its callers catch (aio-libs/aiokafka#1038). It killed a client's metadata refresher,
and every coordinator lookup and produce retry then waited on its next refresh forever: a
service stopped consuming for good after a broker restart (tests/chaos/test_kafka_killed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
import uvicorn
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from shared.runner import SERVICE_LOOP

pytestmark = pytest.mark.integration


class ResettingProxy:
    """Forwards one TCP client to Kafka until :meth:`reset` resets the client's connection
    (RST, as a killed broker's kernel sends when requests were still unread)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split(",")[0].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.client: asyncio.StreamWriter | None = None

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        async with server:
            yield server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.client = writer
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            up_writer.close()

    def reset(self) -> None:
        assert self.client is not None
        sock = self.client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client.transport.abort()


async def _send_after_a_reset(bootstrap: str) -> None:
    proxy = ResettingProxy(bootstrap)
    async with proxy.serving() as port:
        connection = await create_conn("127.0.0.1", port, request_timeout_ms=3000)
        sent: asyncio.Future[tuple[bool, Awaitable[Any]]] = asyncio.Future()

        def send_now(_: object) -> None:
            # Right after the loop saw the reset, before aiokafka's reader handled it: the
            # connection still counts as connected, so a request is written to it.
            try:
                sent.set_result((connection.connected(), connection.send(MetadataRequest([]))))
            except Exception as exc:
                sent.set_exception(exc)

        try:
            connection._closed_fut.add_done_callback(send_now)
            proxy.reset()
            was_connected, response = await asyncio.wait_for(sent, 5)
            assert was_connected
            with pytest.raises(KafkaConnectionError):  # what aiokafka handles: a retry
                await response
        finally:
            connection.close()


def test_a_request_after_a_broker_reset_fails_as_aiokafka_expects(kafka: Any) -> None:
    config = uvicorn.Config("shared.runner:run_service", loop=SERVICE_LOOP)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_send_after_a_reset(kafka.bootstrap_servers))
