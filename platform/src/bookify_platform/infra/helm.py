"""helm, built from the Go module proxy like FerretDB and compose-check (see gobuild).

infra/helm/go.mod pins helm.sh/helm/v3 with a ``tool`` directive: the binary is helm's own
cmd/helm, unchanged, so ``helm lint`` and ``helm template`` in tests/contract/test_helm.py
are exactly what a platform engineer runs against deploy/helm/bookify.
"""

from __future__ import annotations

import re
from pathlib import Path

from bookify_platform.infra import paths
from bookify_platform.infra.errors import InstallError
from bookify_platform.infra.gobuild import Progress, build_go_program, no_progress, required_version

HELM_MODULE = "helm.sh/helm/v3"
CLIENT_GO_MODULE = "k8s.io/client-go"


def release_ldflags(go_mod: Path) -> list[str]:
    """The ``-X`` flags helm's own Makefile links with: its version, and the Kubernetes
    version of its client-go (v0.N -> 1.N) as the default for capabilities and lint's
    deprecation checks. Without them a plain ``go build`` reports Kubernetes 1.20."""
    version = required_version(go_mod, HELM_MODULE)
    client_go = required_version(go_mod, CLIENT_GO_MODULE)
    match = re.fullmatch(r"v0\.(\d+)\.\d+", client_go)
    if match is None:
        raise InstallError(f"{CLIENT_GO_MODULE} {client_go} in {go_mod} is not a v0.N.x version")
    minor = match.group(1)
    flags = [f"-X {HELM_MODULE}/internal/version.version={version}"]
    for package in ("pkg/lint/rules", "pkg/chartutil"):
        flags += [
            f"-X {HELM_MODULE}/{package}.k8sVersionMajor=1",
            f"-X {HELM_MODULE}/{package}.k8sVersionMinor={minor}",
        ]
    return flags


def build_helm(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = no_progress
) -> Path:
    """The helm binary, built on first use into <cache>/helm/<version>/helm."""
    root = root or paths.repo_root()
    return build_go_program(
        "helm",
        pinned_module=HELM_MODULE,
        package=f"{HELM_MODULE}/cmd/helm",
        ldflags=release_ldflags(root / "infra" / "helm" / "go.mod"),
        expected="about 3-5 min on 2 cores: it compiles much of Kubernetes' client libraries",
        root=root,
        cache=cache,
        progress=progress,
    )
