"""`bookify up` (the whole platform in the foreground) and `bookify seed` (demo data)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from bookify_platform import observe, runlogs
from bookify_platform.infra import paths
from bookify_platform.infra.errors import InfraError
from bookify_platform.infra.local import LocalInfra, print_progress
from bookify_platform.services import (
    DEFAULT_PORTS,
    SERVICES,
    PlatformConfig,
    PlatformState,
    ServiceName,
    lay_out_ports,
    parse_replicas,
    recorded_platform,
)
from bookify_platform.supervisor import RestartPolicy, Supervisor
from shared.urls import redact_url, trace_endpoint

DEMO_RESOURCES = [
    ("Main stage — Saturday", 500),
    ("Jazz club — late show", 40),
    ("Workshop: async Python", 25),
    ("Ticket drop: reunion tour", 10),
]


class KafkaListener(StrEnum):
    PLAINTEXT = "plaintext"
    SASL_SSL = "sasl_ssl"


RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        envvar="BOOKIFY_RUN_DIR",
        help="Where state, data and logs live (default: <repo>/.cache/run).",
        show_default=False,
    ),
]

_POLICY = RestartPolicy()
_SHOWN: tuple[ServiceName, ...] = ("gateway", "booking", "consumer")
UP_EPILOG = (
    f"A service that exits is restarted after {_POLICY.first_delay:g} s, then "
    f"{_POLICY.first_delay * 2:g} s, {_POLICY.first_delay * 4:g} s ... up to "
    f"{_POLICY.max_delay:g} s (back to {_POLICY.first_delay:g} s once it has run "
    f"{_POLICY.reset_after:g} s); each restart is one line on stderr. After "
    f"{_POLICY.max_crashes} exits within {_POLICY.window:g} s, `up` stops everything and "
    "exits 1 with the end of that service's log.\n\n"
    "Logs: <run dir>/logs/<UTC time>/<service>.log, one folder per run (logs/latest is the "
    f"newest; the last {runlogs.KEEP} are kept). `bookify status` shows what runs."
)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _replicas(text: str) -> dict[ServiceName, int]:
    try:
        return parse_replicas(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None


def _refuse_a_limit_per_gateway(replicas: dict[ServiceName, int], storage: str | None) -> None:
    # memory:// keeps a bucket per process: N gateways would let a principal through N times.
    if replicas.get("gateway", 1) > 1 and storage is not None and storage.startswith("memory:"):
        raise typer.BadParameter(
            f"gateway={replicas['gateway']} with rate-limit storage {storage} gives each gateway "
            "a limit of its own (a principal gets it once per gateway). Leave "
            "BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE unset to use the Redis `bookify up` starts, "
            "or set it to your redis://host:port/db",
            param_hint="--rate-limit-storage",
        )


def tracing_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The services' OTEL_SDK_DISABLED: on when no OTLP endpoint is set to receive spans.

    Locally there is no collector, and recording spans for nobody costs the gateway CPU per
    booking (see docs/PERFORMANCE.md#tracing-off-without-a-collector). Set
    OTEL_EXPORTER_OTLP_ENDPOINT to trace, or OTEL_SDK_DISABLED yourself to decide either way.
    """
    if trace_endpoint(environ) or "OTEL_SDK_DISABLED" in environ:
        return {}
    return {"OTEL_SDK_DISABLED": "true"}


def tracing_summary(environ: Mapping[str, str]) -> str:
    if tracing_env(environ):
        return "off (no OTEL_EXPORTER_OTLP_ENDPOINT to send spans to)"
    if (endpoint := trace_endpoint(environ)) is not None:
        return f"OTLP to {redact_url(endpoint)}"
    return f"OTEL_SDK_DISABLED={environ['OTEL_SDK_DISABLED']}"


def up(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the endpoints as JSON on stdout.")
    ] = False,
    gateway_port: Annotated[int, typer.Option(envvar="BOOKIFY_GATEWAY_PORT")] = DEFAULT_PORTS[
        "gateway"
    ],
    booking_port: Annotated[int, typer.Option(envvar="BOOKIFY_BOOKING_PORT")] = DEFAULT_PORTS[
        "booking"
    ],
    consumer_port: Annotated[int, typer.Option(envvar="BOOKIFY_CONSUMER_PORT")] = DEFAULT_PORTS[
        "consumer"
    ],
    observability: Annotated[
        bool,
        typer.Option(
            "--observability",
            help="Also run Prometheus (rules and alerts included) scraping the services.",
        ),
    ] = False,
    prometheus_port: Annotated[
        int, typer.Option(envvar="BOOKIFY_PROMETHEUS_PORT")
    ] = observe.DEFAULT_PORT,
    replicas_option: Annotated[
        str,
        typer.Option(
            "--replicas",
            help="Processes per service, e.g. gateway=2,booking=2,consumer=2 (1 each by "
            "default). Replicas listen on consecutive ports from the service's port; a service "
            "whose port they would reach moves up past them.",
        ),
    ] = "",
    rate_limit_storage: Annotated[
        str | None,
        typer.Option(
            envvar="BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE",
            help="Where the gateways keep the per-principal rate limit: redis://host:port/db, "
            "or memory:// (one gateway only). Default: the Redis started with Kafka.",
            show_default=False,
        ),
    ] = None,
    kafka_security: Annotated[
        KafkaListener,
        typer.Option(
            "--kafka-security",
            help="plaintext, or sasl_ssl: Kafka as a secured cluster runs, a SASL_SSL listener "
            "(SCRAM-SHA-512, a CA made for this run dir) with ACLs, each service logging in as "
            "itself. Needs a run dir whose Kafka was first started the same way.",
        ),
    ] = KafkaListener.PLAINTEXT,
    run_dir_option: RunDir = None,
) -> None:
    """Run Kafka, FerretDB, Redis and the three services locally until Ctrl-C (which stops
    them all); with --replicas, several processes of a service.

    Kafka, FerretDB and Redis already started by `bookify infra up` are reused and left running.
    A service that exits is restarted with backoff (see below).
    """
    replicas = _replicas(replicas_option)
    _refuse_a_limit_per_gateway(replicas, rate_limit_storage)
    # SIGTERM (a supervisor, `kill`) stops everything the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = (run_dir_option or paths.default_run_dir(paths.repo_root())).resolve()
    try:
        # Before starting anything: a second `up` would only find every port taken.
        PlatformState(run_dir).ensure_not_running()
    except InfraError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    secure, kafka_login = None, "PLAINTEXT"
    if kafka_security is KafkaListener.SASL_SSL:
        # Imported only here: `up` keeps every module it loads for as long as it runs.
        from bookify_platform.infra.kafka_secure import SecureKafka
        from bookify_platform.secured import ADMIN_ENV, secure_platform
        from shared.settings import Topics

        secure = SecureKafka.of_run_dir(run_dir)
        kafka_login = str(run_dir / ADMIN_ENV)
    infra = LocalInfra(run_dir, attached=True, kafka_secure=secure)
    reuse = infra.status().running
    try:
        infra.kafka.check_listener()
        endpoints = infra.start()
        logins = secure_platform(infra.kafka, run_dir, Topics()) if secure is not None else {}
        config = PlatformConfig(
            service_env=logins,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            mongo_uri=endpoints.mongo_uri,
            ports=lay_out_ports(
                {"gateway": gateway_port, "booking": booking_port, "consumer": consumer_port},
                replicas,
            ),
            replicas=replicas,
            rate_limit_storage=rate_limit_storage or endpoints.redis_url,
            extra_env=tracing_env(os.environ),
        )
        with (
            recorded_platform(config, run_dir, progress=print_progress) as platform,
            contextlib.ExitStack() as extras,
        ):
            # One URL per replica, comma-separated: what `bookify load --host` takes.
            summary: dict[str, str] = {name: ",".join(platform.urls(name)) for name in _SHOWN}
            summary |= {
                "kafka_bootstrap": endpoints.kafka_bootstrap,
                "kafka_security": kafka_login,
                "mongo_uri": endpoints.mongo_uri,
                "rate_limit": redact_url(config.rate_limit_storage),
                "tracing": tracing_summary(os.environ),
                "logs": str(platform.log_dir),
            }
            if observability:
                prometheus = observe.LocalPrometheus(
                    run_dir,
                    {name: [svc.port for svc in platform.replicas(name)] for name in SERVICES},
                    port=prometheus_port,
                )
                prometheus.start()
                extras.callback(prometheus.stop)
                summary["prometheus"] = prometheus.url
            if as_json:
                typer.echo(json.dumps(summary))
            else:
                for name, value in summary.items():
                    typer.echo(f"{name:16} {value}")
                typer.echo("Bookify is up. Try: uv run bookify seed   (Ctrl-C stops everything)")
            # Runs until Ctrl-C/SIGTERM, or raises CrashLoopError when a service keeps dying.
            Supervisor(platform.services.values(), _POLICY, report=print_progress).run()
    except KeyboardInterrupt:
        print_progress("stopping...")
    except InfraError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        if not reuse:
            infra.stop()


def seed(
    host: Annotated[str, typer.Option(help="The gateway's base URL.")] = "http://127.0.0.1:8000",
) -> None:
    """Create demo resources through the public API (as an admin with a dev token)."""
    import httpx

    from shared.auth import AuthSettings, Scope, mint_token

    token = mint_token(AuthSettings(), "seed-admin", [Scope.RESOURCES_ADMIN, Scope.BOOKINGS_READ])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=host, headers=headers, timeout=10) as client:
            for name, capacity in DEMO_RESOURCES:
                response = client.post("/v1/resources", json={"name": name, "capacity": capacity})
                if response.status_code != 202:
                    typer.secho(
                        f"error: creating {name!r} answered {response.status_code}: "
                        f"{response.text}",
                        err=True,
                        fg=typer.colors.RED,
                    )
                    raise typer.Exit(1)
                typer.echo(f"{response.headers['location']}  {name} ({capacity} seats)")
    except httpx.TransportError as exc:
        typer.secho(
            f"error: cannot reach the gateway at {host} ({exc}); start it with `make up`",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1) from None
