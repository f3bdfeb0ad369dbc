"""The three Bookify services as local processes: what `bookify up` and the e2e tests run.

Each service gets its configuration through its own environment prefix
(``BOOKIFY_GATEWAY_*``, ...), exactly as compose.yaml passes it, so a process started
here behaves like one in a container.

A service may run as several replicas (``PlatformConfig.replicas``): processes of the same
service on consecutive ports, sharing its consumer group (Kafka splits the partitions between
them) and the gateways sharing one rate limit in Redis. The first replica is named like the
service (``gateway``), the others ``gateway-1``, ``gateway-2``...

Nothing here restarts a service that dies: the tests kill services on purpose. `bookify up`
adds that with `bookify_platform.supervisor.Supervisor`, and records what runs in
`<run dir>/platform.json` (`PlatformState`) for `bookify status`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx

from bookify_platform import runlogs
from bookify_platform.infra.errors import InfraError, StartupError
from bookify_platform.infra.fsutil import tail
from bookify_platform.infra.process import (
    cmdline,
    ensure_port_free,
    is_alive,
    is_ours,
    spawn,
    terminate,
)
from bookify_platform.infra.state import InfraState, ProcessRecord, StateFile
from shared.readmodel import DEFAULT_VIEWS_DB

ServiceName = Literal["booking", "consumer", "gateway"]
# Start order: the deciders first, so the gateway's first command has somewhere to go.
SERVICES: tuple[ServiceName, ...] = ("booking", "consumer", "gateway")
DEFAULT_PORTS: dict[ServiceName, int] = {"gateway": 8000, "booking": 8001, "consumer": 8002}


MAX_REPLICAS = 16


def instance_name(name: ServiceName, replica: int) -> str:
    """``gateway`` for the first replica, ``gateway-1``, ``gateway-2``... for the others."""
    return name if replica == 0 else f"{name}-{replica}"


def service_of(instance: str) -> ServiceName | None:
    """The service an instance name belongs to (``gateway-1`` -> ``gateway``), or None."""
    base, _, replica = instance.partition("-")
    for name in SERVICES:
        if base == name and (not replica or replica.isdigit()):
            return name
    return None


def parse_replicas(text: str) -> dict[ServiceName, int]:
    """``gateway=2,booking=2`` -> {"gateway": 2, "booking": 2}; ValueError saying what is wrong."""
    counts: dict[ServiceName, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, count = part.partition("=")
        service = service_of(name.strip())
        if not sep or service is None or service != name.strip():
            raise ValueError(f"{part!r}: expected <service>=<count>, service one of {SERVICES}")
        if not count.strip().isdigit() or not 1 <= int(count) <= MAX_REPLICAS:
            raise ValueError(f"{part!r}: the count must be a whole number from 1 to {MAX_REPLICAS}")
        counts[service] = int(count)
    return counts


def lay_out_ports(
    ports: Mapping[ServiceName, int], replicas: Mapping[ServiceName, int]
) -> dict[ServiceName, int]:
    """First ports such that each service's replicas get consecutive ports of their own.

    Each service keeps its port unless the replicas of the one below it (by port) reach it;
    then it moves up just past them: gateway=2 on 8000 pushes booking from 8001 to 8002.
    """
    laid: dict[ServiceName, int] = {}
    next_free = 0
    for name in sorted(ports, key=lambda n: ports[n]):
        laid[name] = max(ports[name], next_free)
        next_free = laid[name] + replicas.get(name, 1)
    return laid


# Each service's database settings and their default names (a db_prefix goes before them).
SERVICE_DATABASES: Mapping[ServiceName, Mapping[str, str]] = {
    "booking": {"DB_NAME": "bookify_booking"},
    "consumer": {"VIEWS_DB": DEFAULT_VIEWS_DB},
    "gateway": {"DB_NAME": "bookify_gateway", "VIEWS_DB": DEFAULT_VIEWS_DB},
}


def store_databases(db_prefix: str = "") -> tuple[str, ...]:
    """Every database the services keep, as named with ``db_prefix``."""
    names = {name for settings in SERVICE_DATABASES.values() for name in settings.values()}
    return tuple(sorted(f"{db_prefix}{name}" for name in names))


@dataclass(frozen=True)
class PlatformConfig:
    """Where the services find Kafka and Mongo, and where each replica listens.

    Replica ``i`` of a service listens on ``ports[service] + i`` (see :func:`lay_out_ports`).
    """

    kafka_bootstrap: str
    mongo_uri: str
    ports: Mapping[ServiceName, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    topic_prefix: str = ""
    db_prefix: str = ""
    environment: str = "dev"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Variables of one service only, over extra_env: e.g. its own Kafka login.
    service_env: Mapping[ServiceName, Mapping[str, str]] = field(default_factory=dict)
    replicas: Mapping[ServiceName, int] = field(default_factory=dict)  # 1 when absent
    # The gateways' BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE; "" leaves the gateway's default.
    rate_limit_storage: str = ""

    def __post_init__(self) -> None:
        taken: dict[int, str] = {}
        for name in self.ports:
            for replica in range(self.count(name)):
                port = self.port_of(name, replica)
                if port in taken:
                    raise ValueError(
                        f"{instance_name(name, replica)} and {taken[port]} would both listen on "
                        f"port {port}: give the services ports further apart"
                    )
                taken[port] = instance_name(name, replica)

    def count(self, name: ServiceName) -> int:
        """How many replicas of ``name`` run."""
        return self.replicas.get(name, 1)

    def port_of(self, name: ServiceName, replica: int = 0) -> int:
        return self.ports[name] + replica

    def env_for(
        self, name: ServiceName, replica: int = 0, *, port: int | None = None
    ) -> dict[str, str]:
        """The environment variables that configure replica ``replica`` of service ``name``
        (on ``port``, when given, instead of its place in the layout)."""
        p = f"BOOKIFY_{name.upper()}_"
        env = {
            f"{p}KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            f"{p}MONGO_URI": self.mongo_uri,
            f"{p}TOPIC_PREFIX": self.topic_prefix,
            f"{p}ENVIRONMENT": self.environment,
            f"{p}HOST": "127.0.0.1",
            f"{p}PORT": str(port if port is not None else self.port_of(name, replica)),
            "OTEL_SERVICE_NAME": f"bookify-{name}",
        }
        if name == "gateway" and self.rate_limit_storage:
            env[f"{p}RATE_LIMIT_STORAGE"] = self.rate_limit_storage
        if self.db_prefix:
            env.update(
                {f"{p}{k}": f"{self.db_prefix}{v}" for k, v in SERVICE_DATABASES[name].items()}
            )
        return {**env, **self.extra_env, **self.service_env.get(name, {})}


class ServiceProcess:
    """One replica of a service: spawn, wait until /readyz answers 200, stop or kill, restart.

    ``name`` is the instance's (``gateway``, ``gateway-1``), ``service`` the service's. Its log
    is `<run_dir>/<name>.log`. `on_spawn` is called after every (re)start, e.g. to record the
    new pid. ``port`` overrides the replica's place in the config's layout (tests).
    """

    def __init__(
        self,
        name: ServiceName,
        config: PlatformConfig,
        run_dir: Path,
        *,
        replica: int = 0,
        port: int | None = None,
        on_spawn: Callable[[ServiceProcess], None] | None = None,
    ) -> None:
        self.service: ServiceName = name
        self.replica = replica
        self.name = instance_name(name, replica)
        self.config = config
        self.port = port if port is not None else config.port_of(name, replica)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = run_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0  # by restart(), i.e. by a supervisor
        self.started_at = 0.0  # wall clock of the last spawn
        self.on_spawn = on_spawn

    def start(self, *, append: bool = False) -> None:
        """Spawn the service; its log is truncated unless `append`."""
        ensure_port_free(self.port, flag="--ports", env=f"BOOKIFY_{self.service.upper()}_PORT")
        env = {**os.environ, **self.config.env_for(self.service, self.replica, port=self.port)}
        self.proc = spawn(
            [sys.executable, "-m", self.service],
            log_path=self.log_path,
            attached=True,
            env=env,
            append=append,
        )
        self.started_at = time.time()
        if self.on_spawn is not None:
            self.on_spawn(self)

    def restart(self, reason: str) -> None:
        """Start again after an exit, appending to the log below a line that says why."""
        self.restarts += 1
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(
                f"\n===== {stamp} bookify up: restart {self.restarts} of {self.name}, "
                f"because {reason} =====\n"
            )
        self.start(append=True)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def poll(self) -> int | None:
        """The exit code once the process has exited; None while it runs or before start."""
        return None if self.proc is None else self.proc.poll()

    def is_ready(self, timeout: float = 1.0) -> bool:
        """True when /readyz answers 200 right now."""
        return probe_ready(self.url, timeout)

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
            if self.is_ready(timeout=2):
                return
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
    """The services of ``names`` as local processes, logging to ``run_dir``; stops them all
    on exit."""

    def __init__(
        self,
        config: PlatformConfig,
        run_dir: Path,
        names: Sequence[ServiceName] = SERVICES,
        progress: Callable[[str], None] = lambda _: None,
        on_spawn: Callable[[ServiceProcess], None] | None = None,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = run_dir
        self.config = config
        self.on_spawn = on_spawn
        # Every replica by instance name, each service's replicas together in start order.
        self.services: dict[str, ServiceProcess] = {}
        for n in names:
            for replica in range(config.count(n)):
                svc = ServiceProcess(n, config, run_dir, replica=replica, on_spawn=on_spawn)
                self.services[svc.name] = svc
        self.progress = progress

    def __getitem__(self, name: str) -> ServiceProcess:
        """A replica by instance name; a service's name gives its first replica."""
        return self.services[name]

    def replicas(self, name: ServiceName) -> list[ServiceProcess]:
        """Every replica of service ``name`` that this platform runs, in replica order."""
        return [svc for svc in self.services.values() if svc.service == name]

    def urls(self, name: ServiceName) -> list[str]:
        return [svc.url for svc in self.replicas(name)]

    def add_replica(
        self, name: ServiceName, *, port: int | None = None, timeout: float = 60.0
    ) -> ServiceProcess:
        """Start one more replica of ``name`` (after the last), wait until it is ready."""
        replica = max((svc.replica for svc in self.replicas(name)), default=-1) + 1
        svc = ServiceProcess(
            name, self.config, self.log_dir, replica=replica, port=port, on_spawn=self.on_spawn
        )
        self.progress(f"starting {svc.name} on {svc.url} (log: {svc.log_path})")
        svc.start()
        self.services[svc.name] = svc
        svc.wait_ready(timeout)
        return svc

    def remove_replica(self, instance: str) -> None:
        """Stop replica ``instance`` (SIGTERM: a clean leave of its consumer group) and drop it."""
        self.services.pop(instance).stop()

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


def probe_ready(url: str, timeout: float = 1.0) -> bool:
    """True when `<url>/readyz` answers 200 within `timeout` seconds."""
    try:
        return httpx.get(f"{url}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


PLATFORM_STATE_FILE = "platform.json"
# Who runs the services: `bookify up`'s own process, so `status` can tell a live run from
# a file left behind by one that was killed. Its record's `log` is the run's log folder.
SUPERVISOR = "supervisor"


class PlatformState:
    """`<run dir>/platform.json`: what `bookify up` runs now, for `bookify status`.

    Same format as infra.json (`bookify_platform.infra.state`): one record per service with its pid,
    url, log and restarts, plus one for the supervising `bookify up` itself. Written on
    every (re)start of a service and removed when `up` exits.
    """

    def __init__(self, run_dir: Path) -> None:
        self.file = StateFile(
            run_dir,
            PLATFORM_STATE_FILE,
            hint="Delete it: `bookify up` writes a new one when it starts.",
        )

    def load(self) -> InfraState:
        return self.file.load()

    def record_supervisor(self, log_dir: Path) -> None:
        """Record this process as the one running the platform, logging to `log_dir`."""
        self.file.record(
            SUPERVISOR,
            ProcessRecord(
                pid=os.getpid(),
                # Something in our own command line (the longest argument: the script's
                # path, usually); a recycled pid running something else lacks it.
                marker=max(cmdline(os.getpid()), key=len, default=""),
                log=str(log_dir),
                endpoint="",
                started_at=time.time(),
            ),
        )

    def record(self, service: ServiceProcess) -> None:
        """Record (or update) `service` after a (re)start; pass as Platform's on_spawn."""
        if service.pid is None:
            return
        self.file.record(
            service.name,
            ProcessRecord(
                pid=service.pid,
                marker=service.service,  # its command line is `python -m <service>`
                log=str(service.log_path),
                endpoint=service.url,
                ports={"http": service.port},
                started_at=service.started_at,
                restarts=service.restarts,
            ),
        )

    def ensure_not_running(self) -> None:
        """Raise InfraError naming the live `bookify up` that already uses this run dir."""
        state = self.load()
        if self.supervisor_alive(state):
            owner = state.processes[SUPERVISOR]
            raise InfraError(
                f"bookify up is already running (pid {owner.pid}, logs in {owner.log}); see "
                "`bookify status`, or stop it (Ctrl-C in its terminal) before starting another"
            )

    def supervisor_alive(self, state: InfraState | None = None) -> bool:
        """True while the `bookify up` that wrote the file still runs."""
        record = (state if state is not None else self.load()).processes.get(SUPERVISOR)
        if record is None:
            return False
        if record.marker:
            return is_ours(record.pid, record.marker)
        return is_alive(record.pid)

    def clear(self) -> None:
        self.file.clear()


@contextlib.contextmanager
def recorded_platform(
    config: PlatformConfig,
    run_dir: Path,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> Iterator[Platform]:
    """The platform as `bookify up` runs it: started and ready, logging to a new folder under
    `<run_dir>/logs/`, recorded in `<run_dir>/platform.json` (kept current on every restart)
    for `bookify status`. Stops the services and removes the record on exit.

    Restarting is not part of it: run a `bookify_platform.supervisor.Supervisor` over
    `platform.services.values()` on this same thread.
    """
    state = PlatformState(run_dir)
    state.ensure_not_running()
    log_dir = runlogs.new_run_folder(run_dir)
    state.record_supervisor(log_dir)
    try:
        with Platform(config, log_dir, progress=progress, on_spawn=state.record) as platform:
            yield platform
    finally:
        state.clear()
