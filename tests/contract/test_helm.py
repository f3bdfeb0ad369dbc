"""deploy/helm/bookify against Kubernetes' schemas and against the code, offline.

No cluster is needed: helm itself is built from the Go module proxy on first use
(infra/helm, cached under .cache/helm/ like compose-check; minutes once, then instant),
``helm lint`` and ``helm template`` run the chart as a platform engineer would, and
kubernetes-validate checks every rendered manifest against the JSON schemas of a pinned
Kubernetes version (shipped in the package, no network). The custom resources (KEDA's
ScaledObject, the Prometheus Operator's ServiceMonitor) have no schema there, so their
kinds, and only theirs, are checked field by field instead.

The contract part reads what each container would run with (command, environment,
ports, probes), loads the service's settings class from exactly that environment, as
the process will, and checks that ports, probes, Service, NetworkPolicy and scrape
annotations all point at the port the service actually listens on. ``contract_problems``
returns what is wrong instead of asserting, so the tests below can prove it catches a
wrong port, path, command or variable name.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from bookify_platform.infra.helm import build_helm
from gateway.config import GatewaySettings
from shared.kafka import BATCH_FINISH_SECONDS
from shared.runner import GRACEFUL_SHUTDOWN_SECONDS
from shared.settings import SHARED_ENVIRONMENT_VARIABLE, ServiceSettings, SubscriberSettings
from tests.contract.test_compose import SERVICES, default_port, env_prefixes

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "bookify"
VALUES = CHART / "values.yaml"
PRODUCTION_VALUES = CHART / "values-production.example.yaml"

# The Kubernetes version every manifest is validated against, pinned; the chart's declared
# floor (Chart.yaml kubeVersion) is validated too, so the claim cannot drift.
KUBE_VERSION = "1.33.0"
RELEASE = "bookify"
NAMESPACE = "bookify"
# Long enough for HS256 in prod and not a dev-only- secret: the services would accept it.
JWT_SECRET = "contract-test-jwt-secret-0123456789abcdefghijklmnop"
# What a platform engineer puts in the Secrets the production example names (created
# outside the chart, so absent from the render).
EXTERNAL_SECRETS = {
    ("bookify-jwt", "jwt-secret"): "an-operator-made-secret-0123456789abcdefghijkl",
    ("bookify-mongodb", "mongodb-uri"): "mongodb://bookify:pw@mongodb-0.mongodb.data.svc:27017/",
    ("bookify-redis", "redis-url"): "redis://:pw@redis-master.data.svc:6379/0",
    **{(f"bookify-{name}", "password"): f"{name}-kafka-password" for name in SERVICES},
}
PROFILES: dict[str, tuple[str, ...]] = {
    # A PLAINTEXT listener, trusted as such (prod refuses it otherwise).
    "default": ("--set", f"auth.jwtSecret={JWT_SECRET}", "--set", "kafka.allowPlaintext=true"),
    "production": ("-f", str(PRODUCTION_VALUES)),
}
PROBES = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
# Names the OpenTelemetry SDK reads itself (shared.telemetry leaves OTEL_* to it).
OTEL_VARIABLES = frozenset(
    value
    for module in (opentelemetry.sdk.environment_variables, opentelemetry.environment_variables)
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
)
COMPONENT = "app.kubernetes.io/component"
# The first test builds helm (minutes, once per cache); every test after it is sub-second.
pytestmark = pytest.mark.timeout(1200)

Manifest = dict[str, Any]


# ---------------------------------------------------------------- helm and its output
@pytest.fixture(scope="module")
def helm(pytestconfig: pytest.Config) -> Path:
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(line: str) -> None:
        # Shown live: a build of minutes behind captured output would look like a hang.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n[helm] {line}", flush=True)

    return build_helm(progress=progress)


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template(
    helm: Path, *args: str, kube_version: str = KUBE_VERSION
) -> subprocess.CompletedProcess[str]:
    return run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
        *args,
    )


def parse(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _rendered(helm: Path, args: tuple[str, ...], kube_version: str) -> str:
    proc = template(helm, *args, kube_version=kube_version)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(helm: Path, *args: str, kube_version: str = KUBE_VERSION) -> list[Manifest]:
    """Fresh objects every call (tests mutate them); helm runs once per distinct render."""
    return parse(_rendered(helm, args, kube_version))


def chart_floor() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(?:-0)?", chart["kubeVersion"])
    assert match is not None, chart["kubeVersion"]
    return match.group(1)


def values(path: Path = VALUES) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Maps merge key by key, anything else replaces: how helm coalesces values files."""
    out = dict(base)
    for key, value in over.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_maps else value
    return out


def given(profile: str) -> dict[str, Any]:
    """The values a profile renders with (--set of the default profile aside)."""
    return _merge(values(), values(PRODUCTION_VALUES)) if profile == "production" else values()


def find(docs: Sequence[Manifest], kind: str, component: str | None = None) -> list[Manifest]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind
        and (component is None or doc["metadata"].get("labels", {}).get(COMPONENT) == component)
    ]


def only(docs: Sequence[Manifest], kind: str, component: str) -> Manifest:
    found = find(docs, kind, component)
    assert len(found) == 1, f"{len(found)} {kind} for {component}"
    return found[0]


# ---------------------------------------------------------------- what the container runs
def dockerfile(name: str) -> str:
    return (ROOT / "services" / name / "Dockerfile").read_text()


def dockerfile_cmd(name: str) -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", dockerfile(name), re.M)
    assert match is not None
    cmd: list[str] = json.loads(match.group(1))
    return cmd


def dockerfile_uid(name: str) -> int:
    match = re.search(r"useradd --uid (\d+)", dockerfile(name))
    assert match is not None
    return int(match.group(1))


def dockerfile_image(name: str) -> str:
    """The repository the Dockerfile's header builds (docker build ... -t <image> .)."""
    match = re.search(rf"docker build -f services/{name}/Dockerfile -t (\S+) \.", dockerfile(name))
    assert match is not None
    return match.group(1)


def container_env(
    container: Manifest, docs: Sequence[Manifest]
) -> tuple[dict[str, str], list[str]]:
    """The container's environment as the process sees it, Secret references resolved
    (the chart's own Secret from the render, an operator's from EXTERNAL_SECRETS)."""
    secrets = {
        doc["metadata"]["name"]: {
            key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()
        }
        for doc in find(docs, "Secret")
    }
    env: dict[str, str] = {}
    problems: list[str] = []
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef", {})
        name, key = ref.get("name"), ref.get("key")
        value = secrets.get(name, {}).get(key) or EXTERNAL_SECRETS.get((name, key))
        if value is None:
            problems.append(f"{var['name']} reads Secret {name}/{key}, which nothing provides")
        else:
            env[var["name"]] = value
    return env, problems


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Exactly ``env`` for Bookify and OTel: nothing leaks in from whoever runs the test."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKIFY_", "OTEL_"))}
    with mock.patch.dict(os.environ, clean | env, clear=True):
        yield


def load_settings(name: str, env: dict[str, str]) -> ServiceSettings:
    with environ(env):
        settings = SERVICES[name]()
    assert isinstance(settings, ServiceSettings)
    return settings


def env_name_problems(name: str, settings: type[BaseSettings], names: Sequence[str]) -> list[str]:
    prefixes = env_prefixes(settings)
    problems = []
    for var in names:
        if var == SHARED_ENVIRONMENT_VARIABLE or var in OTEL_VARIABLES:
            continue
        if var.startswith("OTEL_"):
            problems.append(f"{name}: {var} is no variable the OpenTelemetry SDK reads")
            continue
        prefix = max((p for p in prefixes if var.startswith(p)), key=len, default=None)
        if prefix is None:
            problems.append(f"{name}: {var} matches none of {sorted(prefixes)}")
        elif var.removeprefix(prefix).lower() not in prefixes[prefix]:
            problems.append(f"{name}: {var} names no field of {prefix}*")
    if len(set(names)) != len(names):
        problems.append(f"{name}: a variable is set twice: {sorted(names)}")
    return problems


def resolve(port: int | str | None, named: dict[str, int]) -> int | None:
    return named.get(port) if isinstance(port, str) else port


def contract_problems(docs: Sequence[Manifest], name: str) -> list[str]:
    """Everything about service ``name`` in ``docs`` that disagrees with its code."""
    deployment = only(docs, "Deployment", name)
    pod = deployment["spec"]["template"]
    containers = pod["spec"]["containers"]
    if len(containers) != 1:
        return [f"{name}: {len(containers)} containers, expected the service's one"]
    container = containers[0]
    problems = []

    if container.get("command") != dockerfile_cmd(name):
        problems.append(f"{name}: command {container.get('command')} != {dockerfile_cmd(name)}")
    # registry/repository:tag or registry/repository@sha256:...
    repository = container["image"].split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    if repository != dockerfile_image(name):
        problems.append(f"{name}: image {container['image']} is not {dockerfile_image(name)}")

    env, secret_problems = container_env(container, docs)
    problems += secret_problems
    problems += env_name_problems(name, SERVICES[name], [v["name"] for v in container["env"]])
    try:
        settings = load_settings(name, env)
    except ValidationError as exc:
        return [*problems, f"{name}: the service refuses this environment: {exc}"]
    port = settings.port
    if settings.host != "0.0.0.0":  # noqa: S104 - a pod's port must be reachable from outside it
        problems.append(f"{name}: listens on {settings.host}, unreachable from outside the pod")

    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    if named.get("http") != port:
        problems.append(
            f"{name}: containerPort http={named.get('http')}, the service listens on {port}"
        )
    for key, path in PROBES.items():
        get = container.get(key, {}).get("httpGet", {})
        if get.get("path") != path:
            problems.append(f"{name}: {key} path {get.get('path')}, expected {path}")
        if resolve(get.get("port"), named) != port:
            problems.append(f"{name}: {key} port {get.get('port')} is not {port}")
    readiness = container.get("readinessProbe", {})
    if readiness.get("timeoutSeconds", 1) <= settings.readiness_timeout_seconds:
        problems.append(f"{name}: readinessProbe times out before /readyz's own dependency timeout")
    startup = container.get("startupProbe", {})
    window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    if window < settings.startup_timeout_seconds:
        problems.append(
            f"{name}: startupProbe gives {window} s; start-up may wait "
            f"{settings.startup_timeout_seconds:g} s for Kafka and MongoDB before the port opens"
        )

    annotations = pod["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations and annotations["prometheus.io/port"] != str(port):
        problems.append(f"{name}: prometheus.io/port {annotations['prometheus.io/port']} != {port}")
    for service in find(docs, "Service", name):
        for service_port in service["spec"]["ports"]:
            if resolve(service_port["targetPort"], named) != port:
                problems.append(
                    f"{name}: Service targetPort {service_port['targetPort']} != {port}"
                )
    for policy in find(docs, "NetworkPolicy", name):
        for rule in policy["spec"].get("ingress", []):
            for rule_port in rule.get("ports", []):
                if resolve(rule_port.get("port"), named) != port:
                    problems.append(f"{name}: NetworkPolicy admits port {rule_port.get('port')}")
    return problems


# ---------------------------------------------------------------- helm lint
@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_strict(helm: Path, profile: str) -> None:
    proc = run_helm(
        helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *PROFILES[profile]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm_lint_rejects_a_misspelt_value(helm: Path) -> None:
    """values.schema.json is strict: a typo is an error, not a silently ignored key."""
    proc = run_helm(helm, "lint", str(CHART), *PROFILES["default"], "--set", "gatway.port=8000")
    assert proc.returncode != 0
    assert "gatway" in proc.stdout + proc.stderr


def test_built_helm_is_the_pinned_release(helm: Path) -> None:
    go_mod = (ROOT / "infra" / "helm" / "go.mod").read_text()
    pinned = re.search(r"helm\.sh/helm/v3\s+(v\S+)", go_mod)
    assert pinned is not None
    proc = run_helm(helm, "version", "--template", "{{ .Version }}")
    assert proc.stdout.strip() == pinned.group(1)
    # Linked as helm's release is (bookify_platform.infra.helm.release_ldflags): its default
    # Kubernetes is its client-go's, not the 1.20 of a plain go build, below the chart's floor.
    proc = run_helm(helm, "template", RELEASE, str(CHART), *PROFILES["default"])
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- Kubernetes schemas
def schema_problems(docs: Sequence[Manifest], kube_version: str) -> list[str]:
    problems = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue  # no schema in kubernetes-validate; checked by hand below
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{what}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: {exc.message}")
    return problems


@pytest.mark.parametrize("kube_version", [chart_floor(), KUBE_VERSION])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_manifest_matches_the_kubernetes_schema(
    helm: Path, profile: str, kube_version: str
) -> None:
    docs = render(helm, *PROFILES[profile], kube_version=kube_version)
    assert docs
    assert schema_problems(docs, kube_version) == []


def _misspelt_field(container: Manifest) -> None:
    container["readinessProbes"] = container.pop("readinessProbe")


def _string_port(container: Manifest) -> None:
    container["ports"][0]["containerPort"] = "8000"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [(_misspelt_field, "'readinessProbes' was unexpected"), (_string_port, "is not of type")],
    ids=["misspelt-field", "string-port"],
)
def test_schema_check_catches_a_bad_manifest(
    helm: Path, mutate: Callable[[Manifest], None], message: str
) -> None:
    docs = render(helm, *PROFILES["default"])
    mutate(only(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0])
    problems = schema_problems(docs, KUBE_VERSION)
    assert len(problems) == 1, problems
    assert message in problems[0]


# ---------------------------------------------------------------- custom resources by hand
def scaled_object_problems(doc: Manifest, docs: Sequence[Manifest]) -> list[str]:
    name = doc["metadata"]["labels"][COMPONENT]
    problems = []
    deployment = only(docs, "Deployment", name)
    spec = doc["spec"]
    if spec["scaleTargetRef"].get("name") != deployment["metadata"]["name"]:
        problems.append(f"{name}: scaleTargetRef {spec['scaleTargetRef']} is not its Deployment")
    if "replicas" in deployment["spec"]:
        problems.append(f"{name}: the Deployment sets replicas that KEDA's HPA also sets")
    if not 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]:
        problems.append(
            f"{name}: replica bounds {spec['minReplicaCount']}..{spec['maxReplicaCount']}"
        )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env, _ = container_env(container, docs)
    settings = load_settings(name, env)
    assert isinstance(settings, SubscriberSettings)
    topic = {"booking": settings.topics.commands, "consumer": settings.topics.events}[name]
    expected = {
        "bootstrapServers": settings.kafka_bootstrap_servers,
        "consumerGroup": settings.group,
        "topic": topic,
        "offsetResetPolicy": settings.auto_offset_reset,
    }
    triggers = spec["triggers"]
    if [t["type"] for t in triggers] != ["kafka"]:
        return [*problems, f"{name}: triggers {triggers}, expected one kafka trigger"]
    metadata = triggers[0]["metadata"]
    for key, value in expected.items():
        if metadata.get(key) != value:
            problems.append(
                f"{name}: trigger {key}={metadata.get(key)!r}, the service uses {value!r}"
            )
    lag = metadata.get("lagThreshold")
    if not (isinstance(lag, str) and lag.isdigit() and int(lag) > 0):
        problems.append(f"{name}: lagThreshold {lag!r} is not a positive integer string")
    if metadata.get("limitToPartitionsWithLag") != "true":
        problems.append(f"{name}: scales on every partition's lag, not only those with lag")
    scale_up = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    policies = scale_up.get("behavior", {}).get("scaleUp", {}).get("policies", [])
    if not policies or any(p["type"] != "Pods" or p["value"] != 1 for p in policies):
        problems.append(f"{name}: scale-up may add more than one replica per step: {policies}")
    return problems + keda_login_problems(name, triggers[0], deployment, docs, settings)


KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def keda_login_problems(
    name: str,
    trigger: Manifest,
    deployment: Manifest,
    docs: Sequence[Manifest],
    settings: ServiceSettings,
) -> list[str]:
    """The scaler logs in to Kafka as its service does: same protocol, login and TLS files."""
    security = settings.kafka
    metadata = trigger["metadata"]
    sasl = KEDA_SASL[security.sasl_mechanism] if security.security_protocol.uses_sasl else None
    tls = "enable" if security.security_protocol.uses_tls else None
    problems = [
        f"{name}: trigger {key}={metadata.get(key)!r}, the service's Kafka client says {want!r}"
        for key, want in (("sasl", sasl), ("tls", tls))
        if metadata.get(key) != want
    ]
    reference = trigger.get("authenticationRef", {}).get("name")
    if security.security_protocol == "PLAINTEXT":
        return [*problems, *([f"{name}: a login for PLAINTEXT"] if reference else [])]
    logins = [d for d in find(docs, "TriggerAuthentication") if d["metadata"]["name"] == reference]
    if len(logins) != 1:
        return [
            *problems,
            f"{name}: authenticationRef {reference!r} names no TriggerAuthentication",
        ]
    spec = logins[0]["spec"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {v["name"] for v in container["env"]}
    for ref in spec.get("env", []):
        if ref["containerName"] != container["name"] or ref["name"] not in env:
            problems.append(f"{name}: the scaler's {ref['parameter']} is no variable of {name}")
    given = {ref["parameter"]: ref for ref in spec.get("env", [])}
    if security.security_protocol.uses_sasl and set(given) != {"username", "password"}:
        problems.append(f"{name}: the scaler has {sorted(given)}, not a username and password")
    files = {
        "ca": security.ssl_ca_file,
        "cert": security.ssl_cert_file,
        "key": security.ssl_key_file,
    }
    secrets = {
        ref["parameter"]: (ref["name"], ref["key"]) for ref in spec.get("secretTargetRef", [])
    }
    for parameter, path in files.items():
        mounted = mounted_file(pod, container, str(path)) if path is not None else None
        if secrets.get(parameter) != mounted:
            problems.append(
                f"{name}: the scaler's {parameter} is {secrets.get(parameter)}, the pods' {mounted}"
            )
    return problems


def service_monitor_problems(doc: Manifest, docs: Sequence[Manifest]) -> list[str]:
    name = doc["metadata"]["labels"][COMPONENT]
    service = only(docs, "Service", name)
    problems = []
    selector = doc["spec"]["selector"]["matchLabels"]
    labels = service["metadata"]["labels"]
    if any(labels.get(key) != value for key, value in selector.items()):
        problems.append(f"{name}: selector {selector} does not match its Service")
    job_label = doc["spec"].get("jobLabel")
    if labels.get(job_label) != name:  # observability/prometheus rules use job="<service>"
        problems.append(f"{name}: jobLabel {job_label!r} does not give job={name}")
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in doc["spec"]["endpoints"]:
        if endpoint.get("port") not in port_names or endpoint.get("path") != "/metrics":
            problems.append(f"{name}: endpoint {endpoint} is not the Service's /metrics")
    return problems


CUSTOM_RESOURCES: dict[tuple[str, str], Callable[[Manifest, Sequence[Manifest]], list[str]]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): scaled_object_problems,
    # Checked with its ScaledObject (keda_login_problems).
    ("keda.sh/v1alpha1", "TriggerAuthentication"): lambda doc, docs: [],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): service_monitor_problems,
}


def kafka_topic_problems(doc: Manifest, docs: Sequence[Manifest]) -> list[str]:
    """A Strimzi KafkaTopic against what every service would check its topic against."""
    spec, what = doc["spec"], f"KafkaTopic {doc['metadata']['name']}"
    problems = []
    if not doc["metadata"]["labels"].get("strimzi.io/cluster"):
        problems.append(f"{what}: no strimzi.io/cluster label: no Topic Operator takes it")
    for name in SERVICES:
        container = only(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        settings = load_settings(name, container_env(container, docs)[0])
        if settings.create_topics:
            problems.append(f"{what}: {name} creates topics too (createTopics is true)")
        if spec["topicName"] not in settings.topics.all():
            problems.append(f"{what}: {spec['topicName']!r} is none of {name}'s topics")
        expected = {
            "partitions": settings.topic_partitions,
            "replicas": settings.topic_replication_factor,
            "min.insync.replicas": settings.topic_min_insync_replicas,
        }
        got = {
            "partitions": spec["partitions"],
            "replicas": spec["replicas"],
            "min.insync.replicas": spec.get("config", {}).get("min.insync.replicas"),
        }
        if got != expected:
            problems.append(f"{what}: {got}, {name} checks for {expected}")
    return problems


CUSTOM_RESOURCES[("kafka.strimzi.io/v1beta2", "KafkaTopic")] = kafka_topic_problems

OBSERVABILITY = ROOT / "observability"
# What the chart reads through its files/ symlinks: the same files, not copies.
CHART_FILES = {
    CHART / "files" / "prometheus-rules": OBSERVABILITY / "prometheus" / "rules",
    CHART / "files" / "grafana-dashboards": OBSERVABILITY / "grafana" / "dashboards",
}


def prometheus_rule_problems(doc: Manifest, docs: Sequence[Manifest]) -> list[str]:
    """A PrometheusRule must hold exactly the groups of its observability/ rules file."""
    name = doc["metadata"]["name"].removeprefix(f"{RELEASE}-")
    source = OBSERVABILITY / "prometheus" / "rules" / f"{name}.yml"
    if not source.is_file():
        return [f"PrometheusRule {name}: no {source.relative_to(ROOT)}"]
    if doc["spec"]["groups"] != yaml.safe_load(source.read_text())["groups"]:
        return [f"PrometheusRule {name}: its groups differ from {source.relative_to(ROOT)}"]
    return []


CUSTOM_RESOURCES[("monitoring.coreos.com/v1", "PrometheusRule")] = prometheus_rule_problems
OBSERVABILITY_ON = (
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboards.enabled=true",
)


def test_the_chart_reads_observability_itself_through_symlinks() -> None:
    for link, target in CHART_FILES.items():
        assert link.is_symlink(), f"{link.relative_to(ROOT)} is a copy, not a link"
        assert link.resolve() == target.resolve()


def test_rules_and_dashboards_render_from_the_observability_files(helm: Path) -> None:
    assert find(render(helm, *PROFILES["default"]), "PrometheusRule") == []  # off by default
    docs = render(helm, *PROFILES["default"], *OBSERVABILITY_ON)
    rules = find(docs, "PrometheusRule")
    sources = sorted(OBSERVABILITY.glob("prometheus/rules/*.yml"))
    assert len(rules) == len(sources) == 2
    assert custom_resource_problems(docs) == []
    assert schema_problems(docs, KUBE_VERSION) == []  # the dashboards' ConfigMaps
    dashboards = {
        key: json.loads(value)
        for doc in find(docs, "ConfigMap")
        if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, value in doc["data"].items()
    }
    files = OBSERVABILITY.glob("grafana/dashboards/*.json")
    assert dashboards == {path.name: json.loads(path.read_text()) for path in files}
    rules[0]["spec"]["groups"][0]["rules"].pop()
    assert custom_resource_problems(docs) != []


def custom_resource_problems(docs: Sequence[Manifest]) -> list[str]:
    problems = []
    for doc in docs:
        check = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
        if check is not None:
            problems += check(doc, docs)
    return problems


def test_custom_resources_are_right_by_hand(helm: Path) -> None:
    docs = render(helm, *PROFILES["production"])  # the example turns both on
    kinds = [(d["kind"], d["metadata"]["labels"][COMPONENT]) for d in docs]
    assert {("ScaledObject", "booking"), ("ScaledObject", "consumer")} <= set(kinds)
    assert {("ServiceMonitor", name) for name in SERVICES} <= set(kinds)
    assert ("ScaledObject", "gateway") not in kinds  # the gateway has its CPU HPA
    assert custom_resource_problems(docs) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda spec: spec["triggers"][0]["metadata"].pop("limitToPartitionsWithLag"),
            "not only those with lag",
        ),
        (lambda spec: spec.pop("advanced"), "more than one replica per step"),
    ],
    ids=["every-partition", "fast-scale-up"],
)
def test_hand_checks_catch_a_scaler_that_scales_too_far_or_too_fast(
    helm: Path, mutate: Callable[[Manifest], object], expected: str
) -> None:
    docs = render(helm, *PROFILES["production"])
    mutate(only(docs, "ScaledObject", "consumer")["spec"])
    problems = custom_resource_problems(docs)
    assert any(p.startswith("consumer: ") and expected in p for p in problems), problems


def test_hand_checks_catch_a_wrong_consumer_group(helm: Path) -> None:
    docs = render(helm, *PROFILES["production"])
    scaled = only(docs, "ScaledObject", "booking")
    scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "bookify-bookings"
    only(docs, "ServiceMonitor", "consumer")["spec"]["endpoints"][0]["port"] = "metrics"
    problems = custom_resource_problems(docs)
    assert any("consumerGroup" in p for p in problems), problems
    assert any(p.startswith("consumer: endpoint") for p in problems), problems


STRIMZI_TOPICS = (
    "--set",
    "kafka.strimziTopics.enabled=true",
    "--set",
    "kafka.strimziTopics.cluster=my-cluster",
    "--set",
    "kafka.createTopics=false",
)


def test_strimzi_kafka_topics_are_the_topics_the_services_check(helm: Path) -> None:
    assert find(render(helm, *PROFILES["default"]), "KafkaTopic") == []  # off by default
    docs = render(helm, *PROFILES["production"], *STRIMZI_TOPICS)
    topics = find(docs, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics) == [
        "bookify.commands",
        "bookify.dlq",
        "bookify.events",
    ]
    assert custom_resource_problems(docs) == []
    topics[0]["spec"]["partitions"] = 1
    problems = custom_resource_problems(docs)
    assert any("'partitions': 1" in p for p in problems), problems


def test_render_refuses_strimzi_topics_the_services_would_also_create(helm: Path) -> None:
    proc = template(helm, *PROFILES["default"], *STRIMZI_TOPICS[:4])
    assert proc.returncode != 0
    assert "set kafka.createTopics=false" in proc.stderr


def test_keda_logs_in_to_kafka_as_its_service(helm: Path) -> None:
    docs = render(helm, *PROFILES["production"])  # SASL_SSL, a CA Secret, KEDA on
    logins = {d["metadata"]["labels"][COMPONENT] for d in find(docs, "TriggerAuthentication")}
    assert logins == {"booking", "consumer"}
    metadata = only(docs, "ScaledObject", "consumer")["spec"]["triggers"][0]["metadata"]
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
    mtls = ("booking.keda.enabled=true", "kafka.securityProtocol=SSL", "kafka.tls.clientSecret=c")
    plain_sasl = ("consumer.keda.enabled=true", "kafka.securityProtocol=SASL_PLAINTEXT")
    login = ("kafka.sasl.existingSecret=bookify-consumer", "kafka.sasl.usernameKey=")
    for args in (mtls, (*plain_sasl, *login)):
        rendered = render(helm, *PROFILES["default"], *(a for s in args for a in ("--set", s)))
        assert custom_resource_problems(rendered) == [], args


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda so, ta: so["spec"]["triggers"][0].pop("authenticationRef"), "names no Trigger"),
        (lambda so, ta: so["spec"]["triggers"][0]["metadata"].pop("tls"), "trigger tls=None"),
        (lambda so, ta: ta["spec"]["secretTargetRef"][0].update(key="tls.crt"), "scaler's ca"),
        (lambda so, ta: ta["spec"]["env"].pop(), "not a username and password"),
    ],
    ids=["no-login", "no-tls", "wrong-ca-key", "no-password"],
)
def test_hand_checks_catch_a_scaler_that_cannot_log_in(
    helm: Path, mutate: Callable[[Manifest, Manifest], object], expected: str
) -> None:
    docs = render(helm, *PROFILES["production"])
    mutate(only(docs, "ScaledObject", "booking"), only(docs, "TriggerAuthentication", "booking"))
    problems = custom_resource_problems(docs)
    assert any(p.startswith("booking: ") and expected in p for p in problems), problems


SWITCHES_OFF = (
    "networkPolicy.enabled=false",
    "serviceAccount.create=false",
    "gateway.autoscaling.enabled=false",
    "metrics.podAnnotations=false",
    "spreadAcrossNodes=false",
    "otel.endpoint=",
    *(f"{name}.pdb.enabled=false" for name in SERVICES),
)


def test_every_switch_off_still_renders_a_valid_platform(helm: Path) -> None:
    args = [arg for switch in SWITCHES_OFF for arg in ("--set", switch)]
    docs = render(helm, *PROFILES["default"], *args)
    kinds = {doc["kind"] for doc in docs}
    assert kinds == {"Deployment", "Service", "Secret"}
    assert schema_problems(docs, KUBE_VERSION) == []
    for name in SERVICES:
        assert contract_problems(docs, name) == []
        container = only(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert not [v for v in container["env"] if v["name"].startswith("OTEL_")]
    assert (
        only(docs, "Deployment", "gateway")["spec"]["replicas"] == values()["gateway"]["replicas"]
    )


def test_keda_and_service_monitor_are_off_by_default(helm: Path) -> None:
    docs = render(helm, *PROFILES["default"])
    assert not [d for d in docs if (d["apiVersion"], d["kind"]) in CUSTOM_RESOURCES]
    for name in ("booking", "consumer"):
        assert only(docs, "Deployment", name)["spec"]["replicas"] >= 1
    keda = render(helm, *PROFILES["default"], "--set", "booking.keda.enabled=true")
    assert "replicas" not in only(keda, "Deployment", "booking")["spec"]
    assert custom_resource_problems(keda) == []


# ---------------------------------------------------------------- the contract with the code
@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("profile", PROFILES)
def test_rendered_service_matches_its_settings(helm: Path, profile: str, name: str) -> None:
    assert contract_problems(render(helm, *PROFILES[profile]), name) == []


@pytest.mark.parametrize("name", SERVICES)
def test_values_ports_are_the_services_defaults(name: str) -> None:
    """As compose.yaml and the Dockerfiles: the port each image EXPOSEs and probes."""
    port = default_port(SERVICES[name])
    assert values()[name]["port"] == port
    assert f"EXPOSE {port}\n" in dockerfile(name)


def test_a_wrong_port_override_is_reported(helm: Path) -> None:
    """The service reads its port from its own variable; set there, it moves the listener
    but not the containerPort, probes or Service: exactly the drift the check exists for."""
    docs = render(helm, *PROFILES["default"], "--set", "gateway.env.BOOKIFY_GATEWAY_PORT=9000")
    problems = contract_problems(docs, "gateway")
    assert any("containerPort http=8000, the service listens on 9000" in p for p in problems)
    assert any("readinessProbe port http is not 9000" in p for p in problems), problems
    assert contract_problems(docs, "booking") == []


def _container(docs: list[Manifest]) -> Manifest:
    container: Manifest = only(docs, "Deployment", "gateway")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _env(docs: list[Manifest], name: str) -> Manifest:
    return next(v for v in _container(docs)["env"] if v["name"] == name)


MUTATIONS: dict[str, tuple[Callable[[list[Manifest]], None], str]] = {
    "container-port": (
        lambda docs: _container(docs)["ports"][0].update(containerPort=8080),
        "containerPort http=8080",
    ),
    "probe-port": (
        lambda docs: _container(docs)["livenessProbe"]["httpGet"].update(port=8001),
        "livenessProbe port 8001",
    ),
    "probe-path": (
        lambda docs: _container(docs)["readinessProbe"]["httpGet"].update(path="/ready"),
        "readinessProbe path /ready",
    ),
    "service-target-port": (
        lambda docs: only(docs, "Service", "gateway")["spec"]["ports"][0].update(targetPort=80),
        "Service targetPort 80",
    ),
    "scrape-port": (
        lambda docs: only(docs, "Deployment", "gateway")["spec"]["template"]["metadata"][
            "annotations"
        ].update({"prometheus.io/port": "9000"}),
        "prometheus.io/port 9000",
    ),
    "command": (
        lambda docs: _container(docs).update(command=["python", "-m", "gateway.app"]),
        "command",
    ),
    "variable-name": (
        lambda docs: _env(docs, "BOOKIFY_GATEWAY_KAFKA_BOOTSTRAP_SERVERS").update(
            name="BOOKIFY_GATEWAY_KAFKA_SERVERS"
        ),
        "BOOKIFY_GATEWAY_KAFKA_SERVERS names no field",
    ),
    "other-service-prefix": (
        lambda docs: _env(docs, "BOOKIFY_GATEWAY_LOG_LEVEL").update(
            name="BOOKIFY_BOOKING_LOG_LEVEL"
        ),
        "BOOKIFY_BOOKING_LOG_LEVEL matches none",
    ),
    "startup-window": (
        lambda docs: _container(docs)["startupProbe"].update(failureThreshold=10),
        "startupProbe gives 50 s",
    ),
    "refused-secret": (
        lambda docs: only(docs, "Secret", "auth")["data"].update(
            {"jwt-secret": base64.b64encode(b"too-short").decode()}
        ),
        "refuses this environment",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_contract_check_catches_a_mutated_manifest(helm: Path, mutation: str) -> None:
    mutate, expected = MUTATIONS[mutation]
    docs = render(helm, *PROFILES["default"])
    before = copy.deepcopy(docs)
    mutate(docs)
    assert docs != before, "the mutation no longer applies to the rendered chart"
    problems = contract_problems(docs, "gateway")
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("profile", PROFILES)
def test_values_reach_the_settings(helm: Path, profile: str) -> None:
    """environment, Kafka topic replication and consumer groups: set in values, read by code."""
    chosen = given(profile)
    kafka = chosen["kafka"]
    docs = render(helm, *PROFILES[profile])
    for name in SERVICES:
        container = only(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env, _ = container_env(container, docs)
        assert env[SHARED_ENVIRONMENT_VARIABLE] == "prod"
        settings = load_settings(name, env)
        assert settings.environment == "prod"
        assert not settings.is_dev
        assert settings.kafka_bootstrap_servers == kafka["bootstrapServers"]
        assert settings.topic_partitions == kafka["topicPartitions"]
        assert settings.topic_replication_factor == kafka["topicReplicationFactor"]
        assert settings.topic_min_insync_replicas == kafka["topicMinInsyncReplicas"]
        assert settings.create_topics == kafka["createTopics"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == chosen["otel"]["endpoint"]
        if isinstance(settings, SubscriberSettings):
            assert settings.group_id == SERVICES[name].model_fields["group_id"].default


@pytest.mark.parametrize("profile", PROFILES)
def test_every_gateway_pod_shares_one_rate_limit_in_redis(helm: Path, profile: str) -> None:
    docs = render(helm, *PROFILES[profile])
    container = only(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    env, problems = container_env(container, docs)
    assert problems == []
    settings = load_settings("gateway", env)
    assert isinstance(settings, GatewaySettings)
    expected = (
        EXTERNAL_SECRETS[("bookify-redis", "redis-url")]
        if profile == "production"
        else given(profile)["redis"]["url"]
    )
    assert settings.rate_limit_storage == expected
    assert settings.rate_limit_storage.startswith("redis://")
    for name in ("booking", "consumer"):  # only the gateway limits, only it reaches Redis
        other = only(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert not [v for v in other["env"] if "RATE_LIMIT" in v["name"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "redis.url=memory://"), "keeps a rate limit per gateway pod"),
        (
            ("--set", "redis.url=memory://", "--set", "gateway.autoscaling.enabled=false"),
            "keeps a rate limit per gateway pod",  # replicas: 2 by default
        ),
        (("--set", "redis.url=redis://:pw@redis:6379/0"), "redis.existingSecret"),
    ],
    ids=["memory-with-hpa", "memory-with-two-replicas", "password-in-url"],
)
def test_render_refuses_a_rate_limit_the_gateways_would_not_share(
    helm: Path, args: tuple[str, ...], message: str
) -> None:
    proc = template(helm, *PROFILES["default"], *args)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_memory_rate_limit_renders_for_a_single_gateway(helm: Path) -> None:
    one = ("gateway.autoscaling.enabled=false", "gateway.replicas=1", "redis.url=memory://")
    docs = render(helm, *PROFILES["default"], *(a for s in one for a in ("--set", s)))
    assert contract_problems(docs, "gateway") == []


def test_environment_defaults_to_prod() -> None:
    assert values()["environment"] == "prod"


# ---------------------------------------------------------------- secrets
def test_render_without_a_jwt_secret_fails_clearly(helm: Path) -> None:
    proc = template(helm)
    assert proc.returncode != 0
    assert "auth: no JWT secret" in proc.stderr
    assert "auth.existingSecret" in proc.stderr
    assert "--set auth.jwtSecret=" in proc.stderr


@pytest.mark.parametrize(
    ("secret", "message"),
    [("short-secret", "HS256 needs at least 32"), ("dev-only-" + "x" * 40, "development secret")],
    ids=["short", "dev-only"],
)
def test_render_refuses_a_secret_prod_would_refuse(helm: Path, secret: str, message: str) -> None:
    proc = template(helm, "--set", f"auth.jwtSecret={secret}")
    assert proc.returncode != 0
    assert message in proc.stderr


def test_render_refuses_credentials_in_the_plain_mongodb_uri(helm: Path) -> None:
    proc = template(helm, *PROFILES["default"], "--set", "mongodb.uri=mongodb://u:p@mongo:27017/")
    assert proc.returncode != 0
    assert "mongodb.existingSecret" in proc.stderr


def test_no_secret_value_in_the_values_files(helm: Path) -> None:
    for path in (VALUES, PRODUCTION_VALUES):
        assert values(path)["auth"].get("jwtSecret", "") == "", path
    docs = render(helm, *PROFILES["default"])
    secrets = find(docs, "Secret")
    assert secrets, "the chart makes a Secret from --set auth.jwtSecret"
    for secret in secrets:
        for value in secret["data"].values():
            plain = base64.b64decode(value).decode()
            for path in (VALUES, PRODUCTION_VALUES):
                assert plain not in path.read_text(), f"a Secret value is written in {path.name}"


def test_existing_secrets_are_referenced_not_created(helm: Path) -> None:
    docs = render(helm, *PROFILES["production"])
    assert find(docs, "Secret") == []
    container = only(docs, "Deployment", "booking")["spec"]["template"]["spec"]["containers"][0]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"] if "valueFrom" in v}
    assert refs == {
        "BOOKIFY_BOOKING_MONGO_URI": {"name": "bookify-mongodb", "key": "mongodb-uri"},
        "BOOKIFY_KAFKA_SASL_PASSWORD": {"name": "bookify-booking", "key": "password"},
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_the_jwt_secret_reaches_the_gateway_only(helm: Path, profile: str) -> None:
    docs = render(helm, *PROFILES[profile])
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        env = {v["name"]: v for c in pod["containers"] for v in c.get("env", [])}
        assert ("BOOKIFY_AUTH_JWT_SECRET" in env) == (name == "gateway"), (profile, name)
        # Nor through a volume: no pod of booking or the consumer mounts the JWT Secret.
        secret = "bookify-jwt" if profile == "production" else "bookify"
        volumes = [v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])]
        assert secret not in volumes, (profile, name)


# ---------------------------------------------------------------- rollouts
def test_the_gateway_drains_within_its_grace_period(helm: Path) -> None:
    for profile in PROFILES:
        docs = render(helm, *PROFILES[profile])
        pod = only(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
        env, _ = container_env(pod["containers"][0], docs)
        settings = load_settings("gateway", env)
        assert settings.drain_seconds == given(profile)["gateway"]["drainSeconds"] > 0
        needed = settings.drain_seconds + GRACEFUL_SHUTDOWN_SECONDS
        assert pod["terminationGracePeriodSeconds"] > needed, profile


def test_render_refuses_more_scaled_replicas_than_partitions(helm: Path) -> None:
    keda = ("booking.keda.enabled=true", "booking.keda.maxReplicaCount=4")
    proc = template(helm, *PROFILES["default"], *(a for s in keda for a in ("--set", s)))
    assert proc.returncode != 0
    assert "booking.keda.maxReplicaCount (4) exceeds kafka.topicPartitions (3)" in proc.stderr


def test_booking_and_consumer_finish_their_batch_within_their_grace_period(helm: Path) -> None:
    for profile in PROFILES:
        docs = render(helm, *PROFILES[profile])
        for name in ("booking", "consumer"):
            pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
            needed = BATCH_FINISH_SECONDS + GRACEFUL_SHUTDOWN_SECONDS
            assert pod["terminationGracePeriodSeconds"] >= needed, (profile, name)


def test_render_refuses_a_grace_period_shorter_than_a_batch(helm: Path) -> None:
    short = "consumer.terminationGracePeriodSeconds=20"
    proc = template(helm, *PROFILES["default"], "--set", short)
    assert proc.returncode != 0
    needed = int(BATCH_FINISH_SECONDS + GRACEFUL_SHUTDOWN_SECONDS)  # what the render asks
    assert f"consumer.terminationGracePeriodSeconds (20) must be at least {needed}:" in proc.stderr


def test_render_refuses_a_grace_period_shorter_than_the_drain(helm: Path) -> None:
    proc = template(helm, *PROFILES["default"], "--set", "gateway.terminationGracePeriodSeconds=20")
    assert proc.returncode != 0
    assert "must be at least gateway.drainSeconds (10) + 15" in proc.stderr


# ---------------------------------------------------------------- Kafka security
def mounted_file(pod: Manifest, container: Manifest, path: str) -> tuple[str, str] | None:
    """(Secret name, key) that ``path`` in the container is, through its volume mounts."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/") + "/"
        secret = volumes[mount["name"]].get("secret")
        if path.startswith(directory) and secret is not None:
            return secret["secretName"], path.removeprefix(directory)
    return None


def test_each_service_logs_in_with_its_own_kafka_user_and_trusts_the_mounted_ca(
    helm: Path,
) -> None:
    docs = render(helm, *PROFILES["production"])
    kafka = given("production")["kafka"]
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env, problems = container_env(container, docs)
        assert problems == []
        security = load_settings(name, env).kafka
        assert security.security_protocol == "SASL_SSL"
        assert security.sasl_mechanism == "SCRAM-SHA-512"
        assert security.sasl_username == f"bookify-{name}"
        assert security.sasl_password is not None
        assert security.sasl_password.get_secret_value() == f"{name}-kafka-password"
        assert security.ssl_ca_file is not None
        assert mounted_file(pod, container, str(security.ssl_ca_file)) == (
            kafka["tls"]["caSecret"],
            kafka["tls"]["caKey"],
        )
        assert security.ssl_cert_file is None


def test_a_client_certificate_is_mounted_where_the_settings_read_it(helm: Path) -> None:
    mtls = ("kafka.securityProtocol=SSL", "kafka.tls.clientSecret=bookify-kafka-client")
    docs = render(helm, *PROFILES["default"], *(a for s in mtls for a in ("--set", s)))
    pod = only(docs, "Deployment", "consumer")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env, _ = container_env(container, docs)
    security = load_settings("consumer", env).kafka
    assert security.security_protocol == "SSL"
    assert security.ssl_ca_file is None  # the system's CAs
    for path, key in ((security.ssl_cert_file, "tls.crt"), (security.ssl_key_file, "tls.key")):
        assert mounted_file(pod, container, str(path)) == ("bookify-kafka-client", key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "kafka.securityProtocol=PLAINTEXT in environment=prod"),
        (
            ("kafka.securityProtocol=SASL_SSL",),
            "gateway has no login; set kafka.sasl.existingSecret",
        ),
        (
            ("kafka.securityProtocol=SASL_SSL", "kafka.sasl.serviceSecrets.gateway=gw"),
            "booking has no login",
        ),
        (
            ("kafka.allowPlaintext=true", "kafka.tls.caSecret=ca"),
            "kafka.tls is set but kafka.securityProtocol=PLAINTEXT does not use TLS",
        ),
    ],
    ids=["plaintext-in-prod", "sasl-without-login", "sasl-one-login-missing", "tls-on-plaintext"],
)
def test_render_refuses_kafka_security_the_services_would_refuse(
    helm: Path, args: tuple[str, ...], message: str
) -> None:
    proc = template(
        helm, "--set", f"auth.jwtSecret={JWT_SECRET}", *(a for s in args for a in ("--set", s))
    )
    assert proc.returncode != 0
    assert message in proc.stderr


# ---------------------------------------------------------------- pods, scaling, disruption
@pytest.mark.parametrize("profile", PROFILES)
def test_pods_run_locked_down(helm: Path, profile: str) -> None:
    docs = render(helm, *PROFILES[profile])
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_uid(name)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        # Memory requested is its limit: never the first evicted under node pressure.
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own emptyDir


DIGEST = "sha256:" + "ab" * 32
EXTRAS = (
    "priorityClassName=bookify-critical",
    "extraEnvFrom[0].configMapRef.name=bookify-extra",
    "extraVolumes[0].name=certs",
    "extraVolumes[0].configMap.name=my-ca",
    "extraVolumeMounts[0].name=certs",
    "extraVolumeMounts[0].mountPath=/etc/ssl/extra",
    f"booking.image.digest={DIGEST}",
)


def test_operators_extras_reach_every_pod_and_an_image_can_be_pinned(helm: Path) -> None:
    docs = render(helm, *PROFILES["default"], *(a for s in EXTRAS for a in ("--set", s)))
    assert schema_problems(docs, KUBE_VERSION) == []
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["priorityClassName"] == "bookify-critical"
        assert container["envFrom"] == [{"configMapRef": {"name": "bookify-extra"}}]
        assert {"name": "certs", "configMap": {"name": "my-ca"}} in pod["volumes"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["certs"] == "/etc/ssl/extra"
        assert contract_problems(docs, name) == []
    booking = only(docs, "Deployment", "booking")["spec"]["template"]["spec"]["containers"][0]
    assert booking["image"] == f"bookify-booking@{DIGEST}"
    refused = template(helm, *PROFILES["default"], "--set", "gateway.image.digest=latest")
    assert refused.returncode != 0
    assert "digest" in refused.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_pods_spread_over_nodes_and_zones_per_rollout(helm: Path, profile: str) -> None:
    docs = render(helm, *PROFILES[profile])
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in spread.values():
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            # Counted per ReplicaSet: the old one's pods do not skew where the new ones go.
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]


def test_gateway_scales_on_cpu(helm: Path) -> None:
    docs = render(helm, *PROFILES["default"])
    (hpa,) = find(docs, "HorizontalPodAutoscaler")
    deployment = only(docs, "Deployment", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_service_has_a_disruption_budget(helm: Path, profile: str) -> None:
    docs = render(helm, *PROFILES[profile])
    for name in SERVICES:
        pdb = only(docs, "PodDisruptionBudget", name)
        selector = only(docs, "Deployment", name)["spec"]["selector"]
        assert pdb["spec"]["selector"] == selector
        # An unready pod must not block a node drain.
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_no_service_link_variable_lands_in_the_settings_prefix(helm: Path) -> None:
    docs = render(helm, *PROFILES["default"])  # release "bookify": Services bookify-<name>
    for name in SERVICES:
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
        service = only(docs, "Service", name)["metadata"]["name"]
        env, _ = container_env(pod["containers"][0], docs)
        # What Kubernetes would inject with service links on: <SERVICE>_PORT=tcp://ip:port.
        link = {f"{service.upper().replace('-', '_')}_PORT": "tcp://10.96.0.10:80"}
        with pytest.raises(ValidationError, match="port"):
            load_settings(name, env | link)


# ---------------------------------------------------------------- network policies
def _ports(rule: Manifest) -> list[tuple[int | str, str]]:
    return [(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]]


@pytest.mark.parametrize("profile", PROFILES)
def test_network_policies(helm: Path, profile: str) -> None:
    chosen = given(profile)
    policy_values = chosen["networkPolicy"]
    docs = render(helm, *PROFILES[profile])
    egress_values = policy_values["egress"]

    def egress(*keys: str) -> list[Manifest]:
        return [
            {
                "ports": egress_values[key]["ports"],
                **({"to": t} if (t := egress_values[key]["to"]) else {}),
            }
            for key in keys
        ]

    expected_egress = egress("dns", "kafka", "mongodb", "otelCollector")
    scraper = [policy_values["ingress"]["metricsScraper"]]
    for name in SERVICES:
        policy = only(docs, "NetworkPolicy", name)
        spec = policy["spec"]
        assert spec["podSelector"] == only(docs, "Deployment", name)["spec"]["selector"]
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        # Egress: DNS, Kafka, MongoDB, the collector (the gateway: and Redis), nothing else,
        # every rule port-bound.
        if name == "gateway":
            assert spec["egress"] == expected_egress + egress("redis")
        else:
            assert spec["egress"] == expected_egress
        # Ingress: only the HTTP port; from anywhere (or gateway.from) for the gateway alone.
        ingress = spec["ingress"]
        assert all(_ports(rule) == [("http", "TCP")] for rule in ingress)
        sources = [rule.get("from") for rule in ingress]
        if name == "gateway":
            assert (policy_values["ingress"]["gateway"]["from"] or None) in sources
        else:
            assert sources == [scraper]
    # DNS works with NodeLocal DNSCache too: pods then resolve through its link-local address.
    dns_peers = [peer.get("ipBlock", {}).get("cidr") for peer in egress_values["dns"]["to"]]
    assert "169.254.20.10/32" in dns_peers
    # The ports the policies open are the ports the services are told to use.
    kafka_ports = {
        int(hp.rsplit(":", 1)[1]) for hp in chosen["kafka"]["bootstrapServers"].split(",")
    }
    assert kafka_ports <= {p["port"] for p in egress_values["kafka"]["ports"]}
    otel_port = int(chosen["otel"]["endpoint"].rsplit(":", 1)[1])
    assert otel_port in {p["port"] for p in egress_values["otelCollector"]["ports"]}
    if profile == "default":  # (the production URIs are in an operator's Secrets)
        mongo_port = re.search(r":(\d+)/", chosen["mongodb"]["uri"])
        assert mongo_port is not None
        assert int(mongo_port.group(1)) in {p["port"] for p in egress_values["mongodb"]["ports"]}
        redis_port = re.search(r":(\d+)/", chosen["redis"]["url"])
        assert redis_port is not None
        assert int(redis_port.group(1)) in {p["port"] for p in egress_values["redis"]["ports"]}


GATEWAY_OPENAPI = ROOT / "tests" / "unit" / "gateway" / "openapi.json"


def ingress_problems(paths: Sequence[Manifest]) -> list[str]:
    """The gateway's routes (its OpenAPI document) an Ingress with ``paths`` gets wrong: an
    API route it does not route, or an operations or admin route it does."""

    def routed(route: str) -> bool:
        parts = route.split("/")
        for path in paths:
            prefix = path["path"].rstrip("/").split("/")
            if path["pathType"] == "Exact" and path["path"] == route:
                return True
            if path["pathType"] == "Prefix" and parts[: len(prefix)] == prefix:
                return True
        return False

    routes = json.loads(GATEWAY_OPENAPI.read_text())["paths"]
    problems = []
    for route in routes:
        public = route.startswith("/v1/") and not route.startswith("/v1/admin/")
        if routed(route) != public:
            problems.append(f"{route} {'not ' if public else ''}routed by the Ingress")
    return problems


def test_ingress_check_catches_a_prefix_that_covers_the_admin_routes() -> None:
    everything = [{"path": "/v1", "pathType": "Prefix"}]
    assert ingress_problems(everything) == ["/v1/admin/faults routed by the Ingress"]
    bookings_only = [{"path": "/v1/bookings", "pathType": "Prefix"}]
    assert "/v1/resources not routed by the Ingress" in ingress_problems(bookings_only)


def test_only_the_gateway_is_exposed(helm: Path) -> None:
    docs = render(helm, *PROFILES["production"])
    (ingress,) = find(docs, "Ingress")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    gateway = only(docs, "Service", "gateway")["metadata"]["name"]
    assert {b["name"] for b in backends} == {gateway}
    paths = [p for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    # Every API route is routed; /metrics, /healthz, /readyz and the fault switch are not.
    assert ingress_problems(paths) == []
    for name in ("booking", "consumer"):
        assert only(docs, "Service", name)["spec"]["type"] == "ClusterIP"
