"""Build a small Go program from infra/<name>/ once and cache the binary.

FerretDB (the MongoDB-wire server) and compose-check (compose.yaml through compose-go) are
both built this way: through the Go module proxy, into <cache>/<name>/<version>/<name>,
guarded by a stamp of the sources and a file lock so concurrent callers build it once.
A tool used as it is upstream (helm) has no main.go of its own: its go.mod pins it with a
``tool`` directive and ``package`` names the upstream main package to build.

A dependency's bug can be fixed at build time with a :class:`SourcePatch`: the build uses a
patched copy of the module (a ``replace`` in a go.mod under the cache), so the module cache
stays pristine and this repository holds only the few changed tokens, never the dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bookify_platform.infra import paths, prereqs
from bookify_platform.infra.errors import InstallError
from bookify_platform.infra.fsutil import atomic_write_text, content_stamp, file_lock, stamp_matches

Progress = Callable[[str], None]

SOURCES = ("go.mod", "go.sum", "main.go")


def no_progress(_: str) -> None:
    return None


@dataclass(frozen=True)
class SourcePatch:
    """Replace ``old`` (which must occur exactly ``count`` times) with ``new`` in ``path``
    of ``module`` (the version go.mod pins). ``why`` is for the reader and the error."""

    module: str
    path: str
    old: str
    new: str
    why: str
    count: int = 1

    def apply(self, source: str) -> str:
        found = source.count(self.old)
        if found != self.count:
            raise InstallError(
                f"patch for {self.module}/{self.path} ({self.why}) expects {self.count} "
                f"occurrence(s) of {self.old!r}, found {found}: it no longer applies to this "
                "version; check whether upstream fixed it and drop or update the patch"
            )
        return source.replace(self.old, self.new)


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
    package: str = ".",
    ldflags: Sequence[str] = (),
    expected: str = "",
    patches: Sequence[SourcePatch] = (),
    root: Path | None = None,
    cache: Path | None = None,
    progress: Progress = no_progress,
) -> Path:
    """Build infra/<name>/ into <cache>/<name>/<version>/<name> unless already built; return it.

    ``pinned_module``'s version (from go.mod) names the cache folder; ``expected`` is how
    long the first build takes, for the progress line. ``package`` is the Go package to
    build, resolved through infra/<name>/go.mod (default: infra/<name>/ itself);
    ``ldflags`` are the linker flags its upstream release build sets (``-X`` versions).
    """
    root = root or paths.repo_root()
    cache = cache or paths.cache_dir(root)
    src = root / "infra" / name
    version = required_version(src / "go.mod", pinned_module)
    home = cache / name / version
    binary = home / name
    stamp_file = home / ".installed"
    stamp = content_stamp([src / source for source in SOURCES if (src / source).is_file()])
    if package != "." or ldflags:
        stamp = hashlib.sha256(f"{stamp}{package}{list(ldflags)!r}".encode()).hexdigest()
    if patches:
        stamp = hashlib.sha256(f"{stamp}{patches!r}".encode()).hexdigest()
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
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        build_args = ["-tags", ",".join(tags)] if tags else []
        if ldflags:
            build_args += ["-ldflags", " ".join(ldflags)]
        if patches:
            modfile = _patched_modfile(go, src, env, patches, home / "patched")
            build_args += [f"-modfile={modfile}"]
        returncode, output = _run_with_heartbeat(
            [go, "build", *build_args, "-o", str(staging), package],
            cwd=src,
            env=env,
            heartbeat=lambda elapsed: progress(f"  still building {name} ({elapsed:.0f} s)..."),
        )
        if returncode != 0 or not staging.is_file():
            output = "\n".join(output.splitlines()[-30:])
            raise InstallError(f"go build in {src} failed:\n{output}")
        staging.replace(binary)
        atomic_write_text(stamp_file, stamp + "\n")
        progress(f"{name} {version} built in {time.monotonic() - started:.0f} s")
    return binary


HEARTBEAT_SECONDS = 30.0


def _run_with_heartbeat(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    heartbeat: Callable[[float], None],
    every: float = HEARTBEAT_SECONDS,
) -> tuple[int, str]:
    """Run ``args`` to the end, calling ``heartbeat`` every ``every`` s: a build of several
    minutes (helm pulls in much of Kubernetes) must not look hung. Returns (code, output)."""
    started = time.monotonic()
    with subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        while True:
            try:
                output, _ = proc.communicate(timeout=every)
            except subprocess.TimeoutExpired:
                heartbeat(time.monotonic() - started)  # communicate again loses no output
            else:
                return proc.returncode, output


def _patched_modfile(
    go: str, src: Path, env: dict[str, str], patches: Sequence[SourcePatch], into: Path
) -> Path:
    """Patched copies of the patched modules under ``into``, and a go.mod replacing them.

    (``go build -overlay`` would be lighter, but Go refuses to overlay the module cache.)
    """
    if into.exists():
        shutil.rmtree(into)
    replacements: dict[str, Path] = {}
    for patch in patches:
        copy = replacements.get(patch.module)
        if copy is None:
            version = required_version(src / "go.mod", patch.module)
            copy = into / patch.module
            _copy_tree(_module_dir(go, src, env, f"{patch.module}@{version}"), copy)
            replacements[patch.module] = copy
        target = copy / patch.path
        target.write_text(patch.apply(target.read_text()))
    modfile = into / "go.mod"
    replaces = "".join(f"replace {module} => {path}\n" for module, path in replacements.items())
    modfile.write_text((src / "go.mod").read_text() + "\n" + replaces)
    shutil.copyfile(src / "go.sum", into / "go.sum")  # -modfile reads the .sum beside it
    return modfile


def _copy_tree(source: Path, dest: Path) -> None:
    """Files only, without the module cache's read-only modes (so the copy can be replaced)."""
    for file in source.rglob("*"):
        if file.is_file():
            target = dest / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)


def _module_dir(go: str, src: Path, env: dict[str, str], module: str) -> Path:
    proc = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise InstallError(f"go mod download {module} failed:\n{proc.stdout}{proc.stderr}")
    return Path(json.loads(proc.stdout)["Dir"])
