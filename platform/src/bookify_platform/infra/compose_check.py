"""compose-check: compose.yaml through compose-go (the loader `docker compose` uses), built
from infra/compose-check/ like FerretDB (see gobuild)."""

from __future__ import annotations

from pathlib import Path

from bookify_platform.infra.gobuild import Progress, build_go_program, no_progress


def build_compose_check(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = no_progress
) -> Path:
    """The checker binary, built on first use into <cache>/compose-check/<version>/."""
    return build_go_program(
        "compose-check",
        pinned_module="github.com/compose-spec/compose-go/v2",
        expected="~30 s",
        root=root,
        cache=cache,
        progress=progress,
    )
