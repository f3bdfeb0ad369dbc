"""The three Bookify services as local processes: what `bookify up` and the e2e tests run.

Each service gets its configuration through its own environment prefix
(``BOOKIFY_GATEWAY_*``, ...), exactly as compose.yaml passes it, so a process started
here behaves like one in a container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx

from bookify.infra.errors import StartupError
from bookify.infra.fsutil import tail
from bookify.infra.process import ensure_port_free, spawn, terminate
from shared.readmodel import DEFAULT_VIEWS_DB

ServiceName = Literal["booking", "consumer", "gateway"]
# Start order: the deciders first, so the gateway's first command has somewhere to go.
SERVICES: tuple[ServiceName, ...] = ("booking", "consumer", "gateway")
DEFAULT_PORTS: dict[ServiceName, int] = {"gateway": 8000, "booking": 8001, "consumer": 8002}


@dataclass(frozen=True)
class PlatformConfig:
    kafka_bootstrap: str
    mongo_uri: str
    ports: Mapping[ServiceName, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    topic_prefix: str = ""
    db_prefix: str = ""
    environment: str = "dev"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def env_for(self, name: ServiceName) -> dict[str, str]:
        """The environment variables that configure service ``name``."""
        p = f"BOOKIFY_{name.upper()}_"
        env = {
            f"{p}KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            f"{p}MONGO_URI": self.mongo_uri,
            f"{p}TOPIC_PREFIX": self.topic_prefix,
            f"{p}ENVIRONMENT": self.environment,
            f"{p}HOST": "127.0.0.1",
            f"{p}PORT": str(self.ports[name]),
            "OTEL_SERVICE_NAME": f"bookify-{name}",
        }
        if self.db_prefix:
            databases = {
                "booking": {"DB_NAME": "bookify_booking"},
                "consumer": {"VIEWS_DB": DEFAULT_VIEWS_DB},
                "gateway": {"DB_NAME": "bookify_gateway", "VIEWS_DB": DEFAULT_VIEWS_DB},
            }[name]
            env.update({f"{p}{k}": f"{self.db_prefix}{v}" for k, v in databases.items()})
        return {**env, **self.extra_env}


class ServiceProcess:
    """One service: spawn, wait until /readyz answers 200, stop or kill, restart."""

    def __init__(self, name: ServiceName, config: PlatformConfig, run_dir: Path) -> None:
        self.name = name
        self.config = config
        self.port = config.ports[name]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = run_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ensure_port_free(self.port, flag="--ports", env=f"BOOKIFY_{self.name.upper()}_PORT")
        env = {**os.environ, **self.config.env_for(self.name)}
        self.proc = spawn(
            [sys.executable, "-m", self.name], log_path=self.log_path, attached=True, env=env
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise StartupError(
                    f"{self.name} exited with code {code} before it was ready. "
                    f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{self.name} was not ready after {timeout:.0f} s. "
                    f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc.pid, timeout=timeout, popen=self.proc)

    def kill(self) -> None:
        """SIGKILL: a crash, for chaos tests. No shutdown hooks run."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Platform:
    """The services of ``names`` as local processes; stops them all on exit."""

    def __init__(
        self,
        config: PlatformConfig,
        run_dir: Path,
        names: Sequence[ServiceName] = SERVICES,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.services = {n: ServiceProcess(n, config, run_dir) for n in names}
        self.progress = progress

    def __getitem__(self, name: ServiceName) -> ServiceProcess:
        return self.services[name]

    def start(self, timeout: float = 60.0) -> None:
        try:
            for svc in self.services.values():
                self.progress(f"starting {svc.name} on {svc.url} (log: {svc.log_path})")
                svc.start()
            for svc in self.services.values():
                svc.wait_ready(timeout)
                self.progress(f"{svc.name} ready")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # Reverse order: stop taking requests before the deciders go away.
        for svc in reversed(list(self.services.values())):
            svc.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
