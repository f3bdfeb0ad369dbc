"""FerretDB v1 (MongoDB wire protocol, SQLite backend) built from infra/ferretdb/."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bookify.infra import paths, prereqs
from bookify.infra.errors import InstallError, StartupError
from bookify.infra.fsutil import atomic_write_text, content_stamp, file_lock, stamp_matches, tail
from bookify.infra.process import spawn, wait_for_log_line

Progress = Callable[[str], None]

READY_LINE = r"^(mongodb://\S+)\s*$"
_SOURCES = ("go.mod", "go.sum", "main.go")


def _silent(_: str) -> None:
    return None


def ferretdb_version(go_mod: Path) -> str:
    """The FerretDB module version required by infra/ferretdb/go.mod."""
    match = re.search(r"github\.com/FerretDB/FerretDB\s+(v\S+)", go_mod.read_text())
    if match is None:
        raise InstallError(f"{go_mod} does not require github.com/FerretDB/FerretDB")
    return match.group(1)


def build_ferretdb(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = _silent
) -> Path:
    """Build the wrapper into <cache>/ferretdb/<version>/ferretdb; return the binary.

    Guarded by a stamp (sha256 of go.mod, go.sum, main.go) and a file lock.
    """
    root = root or paths.repo_root()
    cache = cache or paths.cache_dir(root)
    src = root / "infra" / "ferretdb"
    version = ferretdb_version(src / "go.mod")
    home = cache / "ferretdb" / version
    binary = home / "ferretdb"
    stamp_file = home / ".installed"
    stamp = content_stamp([src / name for name in _SOURCES])
    if binary.is_file() and stamp_matches(stamp_file, stamp):
        return binary
    with file_lock(cache / "ferretdb" / f"{version}.lock"):
        if binary.is_file() and stamp_matches(stamp_file, stamp):
            return binary
        go = prereqs.require_go()
        progress(f"building FerretDB {version} (first run only, ~1-2 min)...")
        home.mkdir(parents=True, exist_ok=True)
        staging = home / "ferretdb.partial"
        started = time.monotonic()
        proc = subprocess.run(
            [go, "build", "-tags", "ferretdb_no_postgresql", "-o", str(staging), "."],
            cwd=src,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not staging.is_file():
            output = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise InstallError(f"go build in {src} failed:\n{output}")
        staging.replace(binary)
        atomic_write_text(stamp_file, stamp + "\n")
        progress(f"FerretDB {version} built in {time.monotonic() - started:.0f} s")
    return binary


class LocalFerretDB:
    """One FerretDB whose files live in <run dir>/ferretdb: data/ (SQLite), ferretdb.log."""

    name = "mongo"

    def __init__(
        self,
        run_dir: Path,
        *,
        port: int,
        root: Path | None = None,
        cache: Path | None = None,
        progress: Progress = _silent,
    ) -> None:
        self.root = root or paths.repo_root()
        self.cache = cache or paths.cache_dir(self.root)
        self.home = run_dir / "ferretdb"
        self.port = port
        self.progress = progress
        self.data_dir = self.home / "data"
        self.log_path = self.home / "ferretdb.log"
        self._binary: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    @property
    def ports(self) -> dict[str, int]:
        return {"mongo": self.port}

    def port_options(self) -> list[tuple[int, str, str]]:
        return [(self.port, "--mongo-port", "BOOKIFY_MONGO_PORT")]

    def install(self) -> None:
        self._binary = build_ferretdb(root=self.root, cache=self.cache, progress=self.progress)

    def spawn(self, *, attached: bool) -> subprocess.Popen[bytes]:
        if self._binary is None:
            self.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return spawn(
            [str(self._binary), "-listen", f"127.0.0.1:{self.port}", "-dir", str(self.data_dir)],
            log_path=self.log_path,
            attached=attached,
            cwd=self.home,
        )

    def wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
        """Ready = the URI line on stdout AND a successful `ping` through PyMongo."""
        from pymongo import MongoClient  # slow import, only when needed
        from pymongo.errors import PyMongoError

        deadline = time.monotonic() + timeout
        wait_for_log_line(self.log_path, READY_LINE, proc=proc, what="FerretDB", timeout=timeout)
        last_error = "timed out"
        while time.monotonic() < deadline:
            client: MongoClient[dict[str, object]] = MongoClient(
                self.endpoint, serverSelectionTimeoutMS=2000
            )
            try:
                client.admin.command("ping")
            except PyMongoError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.3)
            else:
                return
            finally:
                client.close()
        raise StartupError(
            f"FerretDB printed its URI but {self.endpoint} does not answer ping: {last_error}. "
            f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
        )
