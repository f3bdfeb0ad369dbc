"""Build a small Go program from infra/<name>/ once and cache the binary.

FerretDB (the MongoDB-wire server) and compose-check (compose.yaml through compose-go) are
both built this way: through the Go module proxy, into <cache>/<name>/<version>/<name>,
guarded by a stamp of the sources and a file lock so concurrent callers build it once.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bookify.infra import paths, prereqs
from bookify.infra.errors import InstallError
from bookify.infra.fsutil import atomic_write_text, content_stamp, file_lock, stamp_matches

Progress = Callable[[str], None]

SOURCES = ("go.mod", "go.sum", "main.go")


def no_progress(_: str) -> None:
    return None


def required_version(go_mod: Path, module: str) -> str:
    """The version of ``module`` that ``go_mod`` requires (the single place it is pinned)."""
    match = re.search(rf"{re.escape(module)}\s+(v\S+)", go_mod.read_text())
    if match is None:
        raise InstallError(f"{go_mod} does not require {module}")
    return match.group(1)


def build_go_program(
    name: str,
    *,
    pinned_module: str,
    tags: Sequence[str] = (),
    expected: str = "",
    root: Path | None = None,
    cache: Path | None = None,
    progress: Progress = no_progress,
) -> Path:
    """Build infra/<name>/ into <cache>/<name>/<version>/<name> unless already built; return it.

    ``pinned_module``'s version (from go.mod) names the cache folder; ``expected`` is how
    long the first build takes, for the progress line.
    """
    root = root or paths.repo_root()
    cache = cache or paths.cache_dir(root)
    src = root / "infra" / name
    version = required_version(src / "go.mod", pinned_module)
    home = cache / name / version
    binary = home / name
    stamp_file = home / ".installed"
    stamp = content_stamp([src / source for source in SOURCES])
    if binary.is_file() and stamp_matches(stamp_file, stamp):
        return binary
    with file_lock(cache / name / f"{version}.lock"):
        if binary.is_file() and stamp_matches(stamp_file, stamp):
            return binary
        go = prereqs.require_go()
        progress(f"building {name} {version} (first run only{expected and ', ' + expected})...")
        home.mkdir(parents=True, exist_ok=True)
        staging = home / f"{name}.partial"
        started = time.monotonic()
        tag_args = ["-tags", ",".join(tags)] if tags else []
        proc = subprocess.run(
            [go, "build", *tag_args, "-o", str(staging), "."],
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
        progress(f"{name} {version} built in {time.monotonic() - started:.0f} s")
    return binary
