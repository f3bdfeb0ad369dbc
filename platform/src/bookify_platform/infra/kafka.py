"""A single-node Apache Kafka broker (KRaft) run as a JVM from its Maven Central jars."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bookify_platform.infra import paths, prereqs
from bookify_platform.infra.errors import InstallError, StartupError
from bookify_platform.infra.fsutil import (
    atomic_write_text,
    content_stamp,
    file_lock,
    stamp_matches,
    tail,
)
from bookify_platform.infra.process import spawn, wait_for_log_line
from bookify_platform.infra.ready import client_error

if TYPE_CHECKING:
    # Only a secured broker needs them, and whoever secures one has imported them already.
    from bookify_platform.infra.kafka_secure import Acl, SecureKafka, TlsFiles
    from shared.kafka_security import KafkaSecurity

Progress = Callable[[str], None]

READY_LINE = r"Kafka Server started"
LISTENER_FILE = "listener"  # the protocol the storage was formatted for
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start, plenty for a dev broker
    "-Djava.awt.headless=true",
)


def _silent(_: str) -> None:
    return None


def kafka_version(pom: Path) -> str:
    """The <kafka.version> property of infra/kafka/pom.xml (the single place it is pinned)."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:
        raise InstallError(f"{pom} has no <kafka.version> property")
    return match.group(1)


def install_kafka(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = _silent
) -> Path:
    """Copy the broker's runtime jars into <cache>/kafka/<version>/lib; return that dir.

    Guarded by a stamp (sha256 of pom.xml) and a file lock: a no-op when installed, and
    concurrent callers wait for one Maven run instead of racing.
    """
    root = root or paths.repo_root()
    cache = cache or paths.cache_dir(root)
    pom_dir = root / "infra" / "kafka"
    pom = pom_dir / "pom.xml"
    version = kafka_version(pom)
    home = cache / "kafka" / version
    lib = home / "lib"
    stamp_file = home / ".installed"
    stamp = content_stamp([pom])
    if stamp_matches(stamp_file, stamp):
        return lib
    with file_lock(cache / "kafka" / f"{version}.lock"):
        if stamp_matches(stamp_file, stamp):
            return lib
        mvn = prereqs.require_maven()
        prereqs.require_java()
        progress(f"downloading Kafka {version} jars from Maven Central (first run only)...")
        staging = home / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)
        started = time.monotonic()
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        jars = list(staging.glob("*.jar")) if staging.is_dir() else []
        if proc.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
            output = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise InstallError(f"mvn dependency:copy-dependencies failed for {pom}:\n{output}")
        staging.rename(lib)
        atomic_write_text(stamp_file, stamp + "\n")
        progress(f"Kafka {version}: {len(jars)} jars in {time.monotonic() - started:.0f} s")
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id: Kafka's Uuid.toString(), url-safe base64 of 16 bytes, no padding.

    Like Kafka's Uuid.randomUuid(), never one starting with "-": StorageTool's argument
    parser would take it for an option (1 start in 64 failed before this).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def plaintext_listeners(*, port: int, controller_port: int) -> str:
    return f"""\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""


def render_server_properties(
    *, port: int, controller_port: int, data_dir: Path, listeners: str | None = None
) -> str:
    """server.properties of a combined broker+controller on 127.0.0.1 (static quorum).

    ``listeners``: the listener lines (kafka_secure.server_properties for SASL_SSL and ACLs);
    a PLAINTEXT listener by default.
    """
    listeners = listeners or plaintext_listeners(port=port, controller_port=controller_port)
    return f"""\
# Written by bookify_platform.infra.kafka on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
{listeners}controller.listener.names=CONTROLLER
log.dirs={data_dir}
# one broker: internal topics cannot have the default RF 3 / min ISR 2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# fast group joins and a small footprint on a dev machine
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
"""


def kafka_home(run_dir: Path) -> Path:
    """Where a run dir keeps its broker's files (and a secure broker's users)."""
    return run_dir / "kafka"


def formatted_protocol(run_dir: Path) -> str:
    """The listener the broker data of ``run_dir`` was formatted for (PLAINTEXT if none said)."""
    listener = kafka_home(run_dir) / LISTENER_FILE
    return listener.read_text().strip() if listener.exists() else "PLAINTEXT"


class LocalKafka:
    """One broker whose files live in <run dir>/kafka: server.properties, data/, kafka.log."""

    name = "kafka"

    def __init__(
        self,
        run_dir: Path,
        *,
        port: int,
        controller_port: int,
        root: Path | None = None,
        cache: Path | None = None,
        progress: Progress = _silent,
        secure: SecureKafka | None = None,
    ) -> None:
        self.root = root or paths.repo_root()
        self.secure = secure
        self.cache = cache or paths.cache_dir(self.root)
        self.run_dir = run_dir
        self.home = kafka_home(run_dir)
        self.port = port
        self.controller_port = controller_port
        self.progress = progress
        self.config = self.home / "server.properties"
        self.data_dir = self.home / "data"
        self.log_path = self.home / "kafka.log"
        self.tls_dir = self.home / "tls"
        self.listener_file = self.home / LISTENER_FILE
        self._lib: Path | None = None

    @property
    def protocol(self) -> str:
        return "PLAINTEXT" if self.secure is None else "SASL_SSL"

    def check_listener(self) -> None:
        """Refuse a data directory formatted for the other listener: its SCRAM users (or their
        absence) were fixed when it was formatted."""
        if not (self.data_dir / "meta.properties").exists():
            return
        formatted = formatted_protocol(self.run_dir)
        if formatted != self.protocol:
            raise StartupError(
                f"the Kafka data in {self.data_dir} is a {formatted} broker's, not a "
                f"{self.protocol} one's: stop it (`bookify infra down`) and remove {self.home}, "
                "or use another --run-dir"
            )

    @property
    def tls(self) -> TlsFiles:
        """The CA clients trust and the broker's certificate (made on the first secure start)."""
        from bookify_platform.infra.kafka_secure import TlsFiles, make_tls_files

        files = TlsFiles(self.tls_dir / "ca.crt", self.tls_dir / "server.pem")
        if not (files.ca_cert.exists() and files.server_pem.exists()):
            files = make_tls_files(self.tls_dir)
        return files

    def client_security(self, user: str | None = None) -> KafkaSecurity | None:
        """How a client logs in as ``user``, the admin by default (None: the PLAINTEXT listener
        needs nothing)."""
        if self.secure is None:
            return None
        from bookify_platform.infra.kafka_secure import ADMIN

        return self.secure.client(user or ADMIN, self.tls.ca_cert)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def marker(self) -> str:
        return str(self.config)

    @property
    def ports(self) -> dict[str, int]:
        return {"kafka": self.port, "controller": self.controller_port}

    def port_options(self) -> list[tuple[int, str, str]]:
        return [
            (self.port, "--kafka-port", "BOOKIFY_KAFKA_PORT"),
            (self.controller_port, "--kafka-controller-port", "BOOKIFY_KAFKA_CONTROLLER_PORT"),
        ]

    def install(self) -> None:
        self._lib = install_kafka(root=self.root, cache=self.cache, progress=self.progress)

    def _java(self, main: str, *args: str) -> list[str]:
        if self._lib is None:
            self.install()
        log4j = self.root / "infra" / "kafka" / "log4j2.properties"
        return [
            prereqs.require_java(),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self._lib}/*",
            main,
            *args,
        ]

    def spawn(self, *, attached: bool) -> subprocess.Popen[bytes]:
        """Write the config, format storage on first start only, and start the broker."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.check_listener()
        listeners = None
        if self.secure is not None:
            from bookify_platform.infra.kafka_secure import server_properties

            listeners = server_properties(
                self.secure, self.tls, port=self.port, controller_port=self.controller_port
            )
        atomic_write_text(
            self.config,
            render_server_properties(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
                listeners=listeners,
            ),
        )
        self.config.chmod(0o600)  # a secure broker's holds the admin's password
        if not (self.data_dir / "meta.properties").exists():
            # SCRAM users exist from the first start: KRaft stores them in the metadata log.
            users: Sequence[str] = ()
            if self.secure is not None:
                from bookify_platform.infra.kafka_secure import scram_arguments

                users = scram_arguments(self.secure)
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    new_cluster_id(),
                    "-c",
                    str(self.config),
                    *users,
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise StartupError(
                    f"formatting Kafka storage in {self.data_dir} failed:\n{fmt.stdout}{fmt.stderr}"
                )
            atomic_write_text(self.listener_file, f"{self.protocol}\n")
        return spawn(
            self._java("kafka.Kafka", str(self.config)),
            log_path=self.log_path,
            attached=attached,
            cwd=self.home,
        )

    def wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float = 60.0) -> None:
        """Ready = the "Kafka Server started" log line AND a client fetching cluster metadata."""
        deadline = time.monotonic() + timeout
        wait_for_log_line(
            self.log_path, READY_LINE, proc=proc, what="Kafka broker", timeout=timeout
        )
        security = self.client_security()
        error = client_error(
            "kafka",
            self.endpoint,
            max(1.0, deadline - time.monotonic()),
            None if security is None else security.environment(),
        )
        if error is not None:
            raise StartupError(
                f"Kafka logged it started but a client at {self.endpoint} failed: {error}. "
                f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def grant(self, acls: Sequence[Acl]) -> None:
        """Add ``acls`` on the running secure broker, as its super user."""
        if self.secure is None:
            raise StartupError("ACLs need the secure listener (LocalKafka(secure=...))")
        from bookify_platform.infra.kafka_secure import admin_client_properties

        admin_config = self.home / "admin.properties"
        atomic_write_text(
            admin_config,
            admin_client_properties(self.secure, self.tls, bootstrap=self.endpoint),
        )
        admin_config.chmod(0o600)
        acl_file = self.home / "acls.txt"
        atomic_write_text(acl_file, "".join(f"{acl.line()}\n" for acl in acls))
        tool = self.root / "infra" / "kafka" / "GrantAcls.java"
        proc = subprocess.run(
            self._java(str(tool), str(admin_config), str(acl_file)),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StartupError(f"granting ACLs failed:\n{proc.stdout}{proc.stderr}")
