"""One log folder per `bookify up`: `<run dir>/logs/<UTC time>/<service>.log`.

A new run never overwrites the logs of the one before (the evidence of why it stopped);
`<run dir>/logs/latest` points at the newest folder, and only the last `KEEP` folders stay.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

LOGS_DIR_NAME = "logs"
LATEST = "latest"
KEEP = 10
# Only folders named like this are ours to prune; anything else under logs/ is left alone.
_RUN_FOLDER = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?$")


def logs_root(run_dir: Path) -> Path:
    return run_dir / LOGS_DIR_NAME


def run_folders(root: Path) -> list[Path]:
    """The run folders under `root`, oldest first."""
    found: list[tuple[str, int, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            match = _RUN_FOLDER.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                found.append((match["stamp"], int(match["n"] or 0), entry))
    return [path for _, _, path in sorted(found)]


def prune(root: Path, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest `keep` run folders; returns the deleted ones."""
    if keep < 1:
        raise ValueError("keep at least the current run's folder")
    doomed = run_folders(root)[:-keep]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def new_run_folder(run_dir: Path, *, now: datetime | None = None, keep: int = KEEP) -> Path:
    """Create this run's log folder, point `latest` at it and prune the oldest ones."""
    root = logs_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = root / stamp
    n = 1
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:  # two runs within one second
            n += 1
            folder = root / f"{stamp}-{n}"
    _point_latest(root, folder)
    prune(root, keep)
    return folder


def latest_run_folder(run_dir: Path) -> Path | None:
    """The folder `latest` points at, if it still exists."""
    link = logs_root(run_dir) / LATEST
    try:
        target = link.parent / os.readlink(link)
    except OSError:
        return None
    return target if target.is_dir() else None


def _point_latest(root: Path, folder: Path) -> None:
    # A relative symlink swapped in by rename: readers never see it missing, and the run
    # dir can be moved or mounted elsewhere without breaking it.
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(folder.name, target_is_directory=True)
    tmp.replace(root / LATEST)
