"""Check for the external tools the local provider needs, with one actionable message."""

from __future__ import annotations

import re
import shutil
import subprocess

from bookify_platform.infra.errors import MissingPrerequisiteError

_JAVA_HINT = "Kafka needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless maven"
_GO_HINT = (
    "FerretDB (the local MongoDB-wire server) is built from source and needs Go 1.24+ "
    "(helm, for the Helm chart's tests, needs 1.26+): "
    "apt-get install golang-go, or https://go.dev/dl/"
)
_REDIS_HINT = (
    "the gateways' shared rate limit runs on Redis: `make tools`, or "
    "apt-get install redis-server (any Redis 6.2+ on PATH as redis-server will do)"
)


def _java_major(java: str) -> int | None:
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    # `java -version` prints to stderr, e.g. 'openjdk version "17.0.13" 2024-10-15'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> str:
    """Path of a Java 17+ `java` (Kafka 4.x brokers need 17)."""
    java = shutil.which("java")
    if java is None:
        raise MissingPrerequisiteError(f"java not found on PATH. {_JAVA_HINT}")
    major = _java_major(java)
    if major is None or major < 17:
        raise MissingPrerequisiteError(f"{java} is Java {major or '(unknown)'}. {_JAVA_HINT}")
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPrerequisiteError(f"mvn not found on PATH. {_JAVA_HINT}")
    return mvn


def require_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise MissingPrerequisiteError(f"go not found on PATH. {_GO_HINT}")
    return go


def require_redis() -> str:
    redis = shutil.which("redis-server")
    if redis is None:
        raise MissingPrerequisiteError(f"redis-server not found on PATH; {_REDIS_HINT}")
    return redis
