"""Where the repository, the install cache and the default run directory live."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from bookify_platform.infra.errors import InfraError

RUN_DIR_ENV = "BOOKIFY_RUN_DIR"
CACHE_DIR_ENV = "BOOKIFY_CACHE_DIR"


class RepoRootNotFoundError(InfraError):
    """Raised when no parent directory holds the uv workspace's pyproject.toml."""


def _is_workspace_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return "workspace" in data.get("tool", {}).get("uv", {})


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` whose pyproject.toml has [tool.uv.workspace].

    Starts from this file when `start` is None, so it works from any working directory
    as long as the package is installed from the workspace (editable, as uv does).
    """
    origin = (start or Path(__file__)).resolve()
    for directory in (origin, *origin.parents):
        if _is_workspace_root(directory):
            return directory
    raise RepoRootNotFoundError(
        f"no pyproject.toml with [tool.uv.workspace] at or above {origin}; "
        "run bookify from a checkout of the Bookify repository"
    )


def cache_dir(root: Path | None = None) -> Path:
    """Install cache (Kafka jars, FerretDB binary): $BOOKIFY_CACHE_DIR or <root>/.cache."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return (root or repo_root()) / ".cache"


def default_run_dir(root: Path | None = None) -> Path:
    """Run directory of the dev stack: $BOOKIFY_RUN_DIR or <root>/.cache/run.

    The variable is what `--run-dir` reads in `bookify up` and `bookify infra`, so a command
    without that option (the benchmarks, `bookify dlq`) finds the same stack."""
    override = os.environ.get(RUN_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return (root or repo_root()) / ".cache" / "run"
