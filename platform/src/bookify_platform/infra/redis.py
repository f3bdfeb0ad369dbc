"""Redis for the gateways' shared rate limit: Debian's `redis-server`, run as a local process.

Installed by the system's package manager, not by us (`make tools` runs
infra/install-debian-tool.sh). It keeps nothing on disk: the rate
limit's counters live for seconds, so a restart losing them costs a principal at most one
fresh burst.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from bookify_platform.infra import prereqs
from bookify_platform.infra.errors import StartupError
from bookify_platform.infra.fsutil import atomic_write_text, tail
from bookify_platform.infra.process import spawn, wait_for_log_line

READY_LINE = r"Ready to accept connections"


def render_redis_conf(*, port: int, home: Path) -> str:
    """redis.conf of a loopback-only, memory-only server."""
    return f"""\
# Written by bookify_platform.infra.redis on every start; edits are overwritten.
bind 127.0.0.1
port {port}
protected-mode yes
dir {home}
# Counters of a rate limit: nothing worth a disk write.
save ""
appendonly no
daemonize no
logfile ""
# Redis rewrites its process title; keep this file's path in it, so `bookify infra down`
# can tell the process is still ours (bookify_platform.infra.process.is_ours).
proc-title-template "{{title}} {{listen-addr}} {{config-file}}"
# Bounded: a rate limit's keys are tiny and expire; never grow past this.
maxmemory 64mb
maxmemory-policy volatile-ttl
"""


class LocalRedis:
    """One redis-server whose files live in <run dir>/redis: redis.conf, redis.log."""

    name = "redis"

    def __init__(self, run_dir: Path, *, port: int) -> None:
        self.home = run_dir / "redis"
        self.port = port
        self.config = self.home / "redis.conf"
        self.log_path = self.home / "redis.log"
        self._binary: str | None = None

    @property
    def endpoint(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def marker(self) -> str:
        return str(self.config)

    @property
    def ports(self) -> dict[str, int]:
        return {"redis": self.port}

    def port_options(self) -> list[tuple[int, str, str]]:
        return [(self.port, "--redis-port", "BOOKIFY_REDIS_PORT")]

    def install(self) -> None:
        self._binary = prereqs.require_redis()

    def spawn(self, *, attached: bool) -> subprocess.Popen[bytes]:
        if self._binary is None:
            self.install()
        assert self._binary is not None
        self.home.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, render_redis_conf(port=self.port, home=self.home))
        return spawn(
            [self._binary, str(self.config)],
            log_path=self.log_path,
            attached=attached,
            cwd=self.home,
        )

    def wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
        """Ready = the "Ready to accept connections" log line AND an answer to PING."""
        deadline = time.monotonic() + timeout
        wait_for_log_line(self.log_path, READY_LINE, proc=proc, what="Redis", timeout=timeout)
        last_error = "timed out"
        while time.monotonic() < deadline:
            try:
                if ping(self.port):
                    return
                last_error = "it did not answer +PONG"
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise StartupError(
            f"Redis logged it is ready but {self.endpoint} does not answer PING: {last_error}. "
            f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
        )


def ping(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when the server at host:port answers PING with +PONG (RESP, no client library)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")
