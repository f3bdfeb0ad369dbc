"""compose-check: compose.yaml through compose-go (the loader `docker compose` uses), from
infra/compose-check/. Built like FerretDB: cached under .cache/compose-check/<version>/."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bookify.infra import paths, prereqs
from bookify.infra.errors import InstallError
from bookify.infra.fsutil import atomic_write_text, content_stamp, file_lock, stamp_matches

Progress = Callable[[str], None]

_SOURCES = ("go.mod", "go.sum", "main.go")


def _silent(_: str) -> None:
    return None


def compose_go_version(go_mod: Path) -> str:
    """The compose-go module version required by infra/compose-check/go.mod."""
    match = re.search(r"github\.com/compose-spec/compose-go/v2\s+(v\S+)", go_mod.read_text())
    if match is None:
        raise InstallError(f"{go_mod} does not require github.com/compose-spec/compose-go/v2")
    return match.group(1)


def build_compose_check(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = _silent
) -> Path:
    """Build the checker into <cache>/compose-check/<version>/compose-check; return it.

    Guarded by a stamp (sha256 of go.mod, go.sum, main.go) and a file lock.
    """
    root = root or paths.repo_root()
    cache = cache or paths.cache_dir(root)
    src = root / "infra" / "compose-check"
    version = compose_go_version(src / "go.mod")
    home = cache / "compose-check" / version
    binary = home / "compose-check"
    stamp_file = home / ".installed"
    stamp = content_stamp([src / name for name in _SOURCES])
    if binary.is_file() and stamp_matches(stamp_file, stamp):
        return binary
    with file_lock(cache / "compose-check" / f"{version}.lock"):
        if binary.is_file() and stamp_matches(stamp_file, stamp):
            return binary
        go = prereqs.require_go()
        progress(f"building compose-check (compose-go {version}, first run only, ~30 s)...")
        home.mkdir(parents=True, exist_ok=True)
        staging = home / "compose-check.partial"
        started = time.monotonic()
        proc = subprocess.run(
            [go, "build", "-o", str(staging), "."],
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
        progress(f"compose-check built in {time.monotonic() - started:.0f} s")
    return binary
