"""A server killed under a running platform comes back where its clients look for it."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from bookify_platform.infra import LocalInfra, free_ports


def pong(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64)


def test_a_killed_server_started_as_recorded_is_back_on_its_own_port(tmp_path: Path) -> None:
    [port] = free_ports(1)
    first = LocalInfra(
        tmp_path, redis_port=port, services=("redis",), attached=True, progress=lambda _: None
    )
    with first:
        first.start()
        killed = first.process("redis")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)

        again = LocalInfra.as_recorded(tmp_path, attached=True, progress=lambda _: None)
        with again:
            endpoints = again.start()
            assert endpoints.redis_url == f"redis://127.0.0.1:{port}/0"
            assert pong(port) == b"+PONG\r\n"
