"""compose.yaml against the code, through compose-go (the loader `docker compose` uses).

No Docker engine is needed: infra/compose-check is a small Go program around compose-go,
built on first use (cached under .cache/compose-check/), that prints the normalized
project (all profiles, interpolated with .env.example) as JSON. The test then checks that
what compose runs matches what the services read: each service's own Dockerfile, command,
healthcheck and ports against its settings class's default port, every BOOKIFY_* variable
against a real settings field, and the depends_on/healthcheck graph.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from bookify_platform.infra.compose_check import build_compose_check
from booking.config import BookingSettings
from consumer.config import ConsumerSettings
from gateway.config import GatewaySettings

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
LOCUST_DOCKERFILE = ROOT / "loadtests" / "Dockerfile"

SERVICES: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "booking": BookingSettings,
    "consumer": ConsumerSettings,
}
# Where the services find the infrastructure inside the compose network.
KAFKA = "kafka:9092"
MONGO = "mongodb://mongo:27017/"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a container, the port must be reachable


@functools.cache
def checker() -> Path:
    return build_compose_check(progress=print)


def load(compose: Path, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    args = [str(checker()), "-f", str(compose)]
    if env_file is not None:
        args += ["-env-file", str(env_file)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def project() -> dict[str, Any]:
    proc = load(COMPOSE)
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, Any] = json.loads(proc.stdout)
    return loaded


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = project()["services"]
    return services[name]


def default_port(settings: type[BaseSettings]) -> int:
    port = settings.model_fields["port"].default
    assert isinstance(port, int)
    return port


def env_prefixes(settings: type[BaseSettings]) -> dict[str, set[str]]:
    """env prefix -> field names it reaches: the class's own, plus nested settings classes
    (GatewaySettings.auth reads BOOKIFY_AUTH_* through AuthSettings' own prefix)."""
    out = {settings.model_config.get("env_prefix", "").upper(): set(settings.model_fields)}
    for field in settings.model_fields.values():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            out |= env_prefixes(nested)
    return out


# ---------------------------------------------------------------- the loader itself
def test_compose_loads_with_env_example() -> None:
    names = set(project()["services"])
    assert {*SERVICES, "kafka", "mongo", "locust-master", "locust-worker"} <= names


def _unknown_dependency(text: str) -> str:
    return text.replace("mongo: { condition: service_healthy }", "mongoo: { condition: x }", 1)


def _bad_port(text: str) -> str:
    return text.replace(':-8000}:8000"', ':-8000}:80000"', 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [(_unknown_dependency, "mongoo"), (_bad_port, "80000")],
    ids=["unknown-dependency", "bad-port"],
)
def test_broken_copy_is_rejected(tmp_path: Path, mutate: Any, message: str) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text()
    broken.write_text(mutate(text))
    assert broken.read_text() != text, "the mutation no longer applies to compose.yaml"
    proc = load(broken)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_required_secret_without_env_file_is_rejected() -> None:
    proc = load(COMPOSE, env_file=None)
    assert proc.returncode != 0
    assert "BOOKIFY_AUTH_JWT_SECRET" in proc.stderr


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    defined = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert used - set(defined) == set()
    for name, value in defined.items():
        if re.search(r"SECRET|PASSWORD|TOKEN|KEY", name):
            assert value.startswith("dev-only-"), f"{name} must carry the dev-only- marking"


# ---------------------------------------------------------------- services vs. code
@pytest.mark.parametrize("name", SERVICES)
def test_build_command_healthcheck_match_the_code(name: str) -> None:
    svc, port = service(name), default_port(SERVICES[name])
    assert svc["build"]["dockerfile"] == f"services/{name}/Dockerfile"
    assert svc["command"] == ["python", "-m", name]
    assert importlib.util.find_spec(f"{name}.__main__") is not None
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(test)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_dockerfile_of_its_own_that_matches_the_code(name: str) -> None:
    dockerfile = (ROOT / "services" / name / "Dockerfile").read_text()
    port = default_port(SERVICES[name])
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(stages) == 2, "multi-stage: build the venv, copy only the venv"
    assert f"uv sync --locked --no-dev --package bookify-{name} " in dockerfile
    user = re.search(r"^USER (\S+)", dockerfile, re.M)
    assert user is not None
    assert user.group(1) not in ("root", "0")
    assert f"EXPOSE {port}\n" in dockerfile
    healthcheck = re.search(r"^HEALTHCHECK .*?\n(?!\s)", dockerfile, re.M | re.S)
    assert healthcheck is not None
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck.group(0)
    assert f'CMD ["python", "-m", "{name}"]' in dockerfile


def test_gateway_publishes_its_port() -> None:
    port = default_port(GatewaySettings)
    assert port == 8000
    assert [(p["target"], p["published"]) for p in service("gateway")["ports"]] == [(8000, "8000")]
    for name in ("booking", "consumer"):  # reached inside the network only
        assert not service(name).get("ports")


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_real_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = SERVICES[name]
    env: dict[str, str] = service(name)["environment"]
    prefixes = env_prefixes(settings)
    own = settings.model_config.get("env_prefix", "").upper()
    for var in (v for v in env if v.startswith("BOOKIFY_")):
        prefix = max((p for p in prefixes if var.startswith(p)), key=len, default=None)
        assert prefix is not None, f"{name}: {var} matches none of {sorted(prefixes)}"
        field = var.removeprefix(prefix).lower()
        assert field in prefixes[prefix], f"{name}: {var} names no field of {prefix}*"
    assert env[f"{own}KAFKA_BOOTSTRAP_SERVERS"] == KAFKA
    assert env[f"{own}MONGO_URI"].startswith(MONGO)
    assert env[f"{own}HOST"] == ALL_INTERFACES
    # The values parse: the service would start with exactly this environment.
    for var in list(os.environ):
        if var.startswith("BOOKIFY_"):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    loaded = settings()
    assert getattr(loaded, "kafka_bootstrap_servers", None) == KAFKA
    assert getattr(loaded, "port", None) == default_port(settings)


def test_gateways_share_their_rate_limit_in_the_compose_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway, redis = service("gateway"), service("redis")
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert redis["image"].startswith("redis:")
    assert "redis-cli" in redis["healthcheck"]["test"]
    for var in list(os.environ):
        if var.startswith("BOOKIFY_"):
            monkeypatch.delenv(var)
    for var, value in gateway["environment"].items():
        monkeypatch.setenv(var, value)
    assert GatewaySettings().rate_limit_storage == "redis://redis:6379/0"


def test_kafka_advertises_what_the_services_use() -> None:
    listeners = service("kafka")["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{KAFKA}" in listeners.split(",")


# ---------------------------------------------------------------- start order
@pytest.mark.parametrize("name", SERVICES)
def test_services_wait_for_healthy_infrastructure(name: str) -> None:
    depends = service(name)["depends_on"]
    for infra in ("kafka", "mongo"):
        assert depends[infra]["condition"] == "service_healthy"


def test_service_healthy_targets_have_healthchecks() -> None:
    services: dict[str, dict[str, Any]] = project()["services"]
    for name, svc in services.items():
        for target, dep in (svc.get("depends_on") or {}).items():
            if dep["condition"] != "service_healthy":
                continue
            check = services[target].get("healthcheck") or {}
            why = f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
            assert check.get("test"), why
            assert not check.get("disable"), why


# ---------------------------------------------------------------- load profile
def test_locust_master_and_workers() -> None:
    master, worker = service("locust-master"), service("locust-worker")
    dockerfile = LOCUST_DOCKERFILE.read_text()
    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M)
    assert python is not None
    assert "uv sync --locked --no-dev --package bookify-loadtests " in dockerfile
    locustfile = f"/app/.venv/lib/python{python.group(1)}/site-packages/loadtests/locustfile.py"
    for svc in (master, worker):
        assert svc["profiles"] == ["load"]
        assert svc["build"]["dockerfile"] == "loadtests/Dockerfile"
        assert f"--locustfile={locustfile}" in svc["command"]
        assert "BOOKIFY_AUTH_JWT_SECRET" in svc["environment"]  # mints the gateway's tokens
    assert {"--master", "--host=http://gateway:8000", "--exporter-port=9646"} <= set(
        master["command"]
    )
    assert [(p["target"], p["published"]) for p in master["ports"]] == [(8089, "8089")]
    assert "locust-master:9646" in (ROOT / "observability/prometheus/prometheus.yml").read_text()
    assert {"--worker", "--master-host=locust-master"} <= set(worker["command"])
    assert worker["deploy"]["replicas"] >= 2
    assert (ROOT / "loadtests/src/loadtests/locustfile.py").is_file()
