"""LocalInfra: Kafka + FerretDB (+ Redis for the gateways' shared rate limit) as local
processes, the provider behind `bookify infra` and the tests' `local` mode."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

from bookify_platform.infra import paths
from bookify_platform.infra.errors import StartupError
from bookify_platform.infra.ferretdb import LocalFerretDB
from bookify_platform.infra.kafka import LocalKafka, formatted_protocol
from bookify_platform.infra.process import ensure_port_free, is_ours, terminate
from bookify_platform.infra.redis import LocalRedis
from bookify_platform.infra.state import ProcessRecord, StateFile

if TYPE_CHECKING:
    from bookify_platform.infra.kafka_secure import SecureKafka

Service = Literal["kafka", "mongo", "redis"]
ALL_SERVICES: tuple[Service, ...] = ("kafka", "mongo", "redis")

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_MONGO_PORT = 27017
DEFAULT_REDIS_PORT = 6379


def print_progress(message: str) -> None:
    """Default progress sink: one line on stderr (stdout stays clean for --json)."""
    print(message, file=sys.stderr, flush=True)


class _Server(Protocol):
    name: str
    log_path: Path

    @property
    def endpoint(self) -> str: ...
    @property
    def marker(self) -> str: ...
    @property
    def ports(self) -> dict[str, int]: ...
    def port_options(self) -> list[tuple[int, str, str]]: ...
    def install(self) -> None: ...
    def spawn(self, *, attached: bool) -> subprocess.Popen[bytes]: ...
    def wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float) -> None: ...


@dataclass(frozen=True)
class InfraEndpoints:
    """Where clients connect. A field is "" when that service was not requested."""

    kafka_bootstrap: str
    mongo_uri: str
    redis_url: str = ""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    endpoint: str | None
    log: str | None


@dataclass(frozen=True)
class InfraStatus:
    run_dir: Path
    services: dict[str, ServiceStatus]

    @property
    def running(self) -> bool:
        return bool(self.services) and all(s.running for s in self.services.values())


class LocalInfra:
    """Start/stop Kafka and FerretDB as processes whose state lives in `run_dir`.

    attached=True (tests): children die with this process (PR_SET_PDEATHSIG).
    attached=False (`bookify infra up`): children run in their own session and outlive us.

    start() is idempotent: a service already running from this run dir (per infra.json
    and a command-line check) is reused, not restarted. If start() fails or is
    interrupted (Ctrl-C), it stops what it started itself and re-raises.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        kafka_port: int = DEFAULT_KAFKA_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        mongo_port: int = DEFAULT_MONGO_PORT,
        redis_port: int = DEFAULT_REDIS_PORT,
        attached: bool = False,
        services: Collection[Service] = ALL_SERVICES,
        cache_dir: Path | None = None,
        progress: Callable[[str], None] = print_progress,
        kafka_timeout: float = 60.0,
        mongo_timeout: float = 30.0,
        redis_timeout: float = 10.0,
        kafka_secure: SecureKafka | None = None,
    ) -> None:
        root = paths.repo_root()
        self.run_dir = (run_dir or paths.default_run_dir(root)).resolve()
        self.attached = attached
        self.progress = progress
        self.state = StateFile(self.run_dir)
        cache = cache_dir or paths.cache_dir(root)
        self._servers: list[_Server] = []
        self._timeouts: dict[str, float] = {
            "kafka": kafka_timeout,
            "mongo": mongo_timeout,
            "redis": redis_timeout,
        }
        if "kafka" in services:
            self._servers.append(
                LocalKafka(
                    self.run_dir,
                    port=kafka_port,
                    controller_port=controller_port,
                    root=root,
                    cache=cache,
                    progress=progress,
                    secure=kafka_secure,
                )
            )
        if "mongo" in services:
            self._servers.append(
                LocalFerretDB(
                    self.run_dir, port=mongo_port, root=root, cache=cache, progress=progress
                )
            )
        if "redis" in services:
            self._servers.append(LocalRedis(self.run_dir, port=redis_port))
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def as_recorded(
        cls,
        run_dir: Path,
        *,
        attached: bool = False,
        progress: Callable[[str], None] = print_progress,
    ) -> LocalInfra:
        """The servers ``run_dir``'s state file records, each on the ports it was started on,
        Kafka on the listener its data was formatted for: what brings a server killed
        meanwhile back as it was (``bookify chaos``), where the defaults would start it on
        other ports than its clients know."""
        run_dir = run_dir.resolve()
        records = StateFile(run_dir).load().processes

        def port(server: str, name: str, default: int) -> int:
            record = records.get(server)
            return default if record is None else record.ports.get(name, default)

        secure = None
        if formatted_protocol(run_dir) == "SASL_SSL":
            from bookify_platform.infra.kafka_secure import SecureKafka

            secure = SecureKafka.of_run_dir(run_dir)
        return cls(
            run_dir,
            kafka_port=port("kafka", "kafka", DEFAULT_KAFKA_PORT),
            controller_port=port("kafka", "controller", DEFAULT_CONTROLLER_PORT),
            mongo_port=port("mongo", "mongo", DEFAULT_MONGO_PORT),
            redis_port=port("redis", "redis", DEFAULT_REDIS_PORT),
            services=[name for name in ALL_SERVICES if name in records],
            attached=attached,
            kafka_secure=secure,
            progress=progress,
        )

    @property
    def kafka(self) -> LocalKafka:
        """The Kafka server (its TLS files, logins and ACLs when secure)."""
        [kafka] = [s for s in self._servers if isinstance(s, LocalKafka)]
        return kafka

    # ------------------------------------------------------------------ start
    def start(self) -> InfraEndpoints:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        current = self.state.load().processes
        endpoints: dict[str, str] = {}
        to_start: list[_Server] = []
        for server in self._servers:
            record = current.get(server.name)
            if record is not None and is_ours(record.pid, record.marker):
                self.progress(f"{server.name} already running (pid {record.pid})")
                endpoints[server.name] = record.endpoint
                continue
            if record is not None:
                self.state.forget(server.name)  # stale entry from a crashed run
            to_start.append(server)

        for server in to_start:
            for port, flag, env in server.port_options():
                ensure_port_free(port, flag=flag, env=env)

        # Maven (network-bound) and `go build` (CPU-bound) overlap well.
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(server.install) for server in to_start]:
                future.result()

        started: list[_Server] = []
        try:
            for server in to_start:
                self.progress(f"starting {server.name}...")
                self._spawn(server)
                started.append(server)
            for server in started:
                t0 = time.monotonic()
                server.wait_ready(self._children[server.name], timeout=self._timeouts[server.name])
                self.progress(
                    f"{server.name} ready at {server.endpoint} "
                    f"(+{time.monotonic() - t0:.1f} s, log {server.log_path})"
                )
                endpoints[server.name] = server.endpoint
        except BaseException:
            self._stop(names=[s.name for s in started])
            raise
        return InfraEndpoints(
            kafka_bootstrap=endpoints.get("kafka", ""),
            mongo_uri=endpoints.get("mongo", ""),
            redis_url=endpoints.get("redis", ""),
        )

    def _spawn(self, server: _Server) -> None:
        proc = server.spawn(attached=self.attached)
        self._children[server.name] = proc
        self.state.record(
            server.name,
            ProcessRecord(
                pid=proc.pid,
                marker=server.marker,
                log=str(server.log_path),
                endpoint=server.endpoint,
                ports=server.ports,
                started_at=time.time(),
            ),
        )

    # ------------------------------------------------------------------ chaos tests
    def process(self, name: Service) -> subprocess.Popen[bytes]:
        """The process of server `name` this instance started, to signal it (chaos tests:
        SIGSTOP/SIGCONT, SIGKILL). Raises KeyError when this instance did not start it."""
        return self._children[name]

    def restart(self, name: Service) -> None:
        """Spawn server `name` again, on the same data dir, once its process has exited.

        Returns without waiting (`wait_ready(name)` does), so a caller can keep serving
        traffic meanwhile. Spawns from the calling thread: attached, the server dies with it.
        """
        server = next(s for s in self._servers if s.name == name)
        if self._children[name].poll() is None:
            raise StartupError(f"{name} is still running; kill it before restart()")
        for port, flag, env in server.port_options():
            ensure_port_free(port, flag=flag, env=env)
        self._spawn(server)

    def wait_ready(self, name: Service) -> None:
        """Wait until server `name` (after restart()) is ready, as start() does."""
        server = next(s for s in self._servers if s.name == name)
        server.wait_ready(self._children[name], timeout=self._timeouts[name])

    # ------------------------------------------------------------------ stop
    def stop(self, *, timeout: float = 30.0) -> list[str]:
        """Stop every process recorded in the state file that is still ours.

        Returns the names of the processes that were signalled. Entries whose pid is gone
        or now belongs to something else are dropped without signalling anything.
        """
        return self._stop(names=None, timeout=timeout)

    def _stop(self, *, names: list[str] | None, timeout: float = 30.0) -> list[str]:
        stopped: list[str] = []
        records = self.state.load().processes
        # Reverse start order: the consumers of Kafka/Mongo are gone by now anyway.
        for name in reversed(list(records)):
            if names is not None and name not in names:
                continue
            record = records[name]
            child = self._children.pop(name, None)
            if is_ours(record.pid, record.marker):
                terminate(record.pid, timeout=timeout, popen=child)
                stopped.append(name)
            elif child is not None:
                child.poll()  # reap an exited child
            self.state.forget(name)
        return stopped

    # ------------------------------------------------------------------ status
    def status(self) -> InfraStatus:
        records = self.state.load().processes
        services: dict[str, ServiceStatus] = {}
        for server in self._servers:
            record = records.get(server.name)
            if record is None:
                services[server.name] = ServiceStatus(server.name, False, None, None, None)
                continue
            services[server.name] = ServiceStatus(
                name=server.name,
                running=is_ours(record.pid, record.marker),
                pid=record.pid,
                endpoint=record.endpoint,
                log=record.log,
            )
        return InfraStatus(self.run_dir, services)

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
