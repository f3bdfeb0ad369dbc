"""Local infrastructure without Docker: Apache Kafka as a JVM from Maven Central jars,
FerretDB (MongoDB wire protocol on SQLite) built with Go, and Debian's redis-server (the
gateways' shared rate limit). Used by `bookify infra` and by the test fixtures' `local`
provider.
"""

from bookify_platform.infra.errors import (
    InfraError,
    InstallError,
    MissingPrerequisiteError,
    PortInUseError,
    StartupError,
    StateFileError,
)
from bookify_platform.infra.local import (
    ALL_SERVICES,
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    DEFAULT_REDIS_PORT,
    InfraEndpoints,
    InfraStatus,
    LocalInfra,
    Service,
    ServiceStatus,
)
from bookify_platform.infra.paths import cache_dir, default_run_dir, repo_root
from bookify_platform.infra.process import free_port, free_ports, port_is_free

__all__ = [
    "ALL_SERVICES",
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_MONGO_PORT",
    "DEFAULT_REDIS_PORT",
    "InfraEndpoints",
    "InfraError",
    "InfraStatus",
    "InstallError",
    "LocalInfra",
    "MissingPrerequisiteError",
    "PortInUseError",
    "Service",
    "ServiceStatus",
    "StartupError",
    "StateFileError",
    "cache_dir",
    "default_run_dir",
    "free_port",
    "free_ports",
    "port_is_free",
    "repo_root",
]
