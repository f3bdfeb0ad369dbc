"""`bookify bench`: benchmarks that print figures (not tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bookify_bench.pipeline import (
    BenchConfig,
    bench_ceiling,
    bench_generator,
    bench_pipeline,
    generator_report,
    pipeline_dict,
    report,
)
from bookify_bench.push import PushBenchConfig, bench_push, push_report
from bookify_bench.stages import (
    StageConfig,
    bench_gateway,
    bench_stage,
    drain_report,
    gateway_report,
)
from bookify_bench.verdict import (
    VerdictBenchConfig,
    bench_verdict,
    replay_verdict,
    verdict_report,
)
from bookify_platform.infra import paths
from bookify_platform.infra.local import LocalInfra, print_progress
from bookify_platform.services import ServiceName
from loadtests.mix import MixError, parse_mix
from loadtests.openmodel import run

app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)

Messages = Annotated[
    int, typer.Option(min=100, max=200_000, help="Messages put on the topic before it starts.")
]
Resources = Annotated[
    list[int],
    typer.Option(
        "--resources", min=1, max=1000, help="Resources they spread over (repeat for several runs)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the figures as JSON for scripts.")]


@app.command("pipeline")
def pipeline(
    rate: Annotated[float, typer.Option(min=1, help="Bookings per second offered.")] = 50,
    duration: Annotated[float, typer.Option(min=1, max=600, help="Seconds of load.")] = 30,
    gateway: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    kafka: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap servers (default: from `bookify infra status`)."),
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(
            help="A crowd's operations instead of bookings alone: `default`, or weights like "
            "book=60,retry=6,cancel=8,read_booking=14,read_seats=10,rebook=2 (--rate counts "
            "them all)."
        ),
    ] = None,
    capacity: Annotated[
        int | None,
        typer.Option(
            min=1, max=100_000, help="Seats of the hot resource (default: enough for all)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the crowd's draws (same seed, same mix).")] = 0,
    as_json: AsJson = False,
) -> None:
    """Drive bookings at a fixed arrival rate against a running `bookify up`, then the ceiling."""
    try:
        weights = None if mix is None else parse_mix(mix)
    except MixError as exc:
        typer.secho(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    bootstrap = kafka or LocalInfra().status().services["kafka"].endpoint
    if not bootstrap:
        typer.secho("error: no Kafka found; start the platform with `make up`", err=True)
        raise typer.Exit(1)
    say = (lambda _: None) if as_json else print_progress
    config = BenchConfig(
        gateway=gateway,
        kafka_bootstrap=bootstrap,
        rate=rate,
        duration=duration,
        mix=weights,
        capacity=capacity,
        seed=seed,
    )
    figures = run(bench_pipeline(config, progress=say))
    say(f"ceiling: bare FastAPI 202 at {rate:g}/s for {duration:g} s")
    run_dir = paths.default_run_dir(paths.repo_root())
    ceiling = run(bench_ceiling(rate, duration, run_dir)).result
    if as_json:
        typer.echo(json.dumps(pipeline_dict(figures, ceiling), indent=2))
    else:
        typer.echo(report(figures, ceiling))


@app.command("generator")
def generator(
    rate: Annotated[float, typer.Option(min=1, help="Arrivals per second offered.")] = 2000,
    duration: Annotated[float, typer.Option(min=1, max=600, help="Seconds per generator.")] = 10,
    as_json: AsJson = False,
) -> None:
    """The open-model generator's requests/s per core and scheduling lag, beside wrk."""
    run_dir = paths.default_run_dir(paths.repo_root())
    if not as_json:
        print_progress(
            f"open model at {rate:g}/s, then wrk, {duration:g} s each, on a bare endpoint"
        )
    try:
        figures = run(bench_generator(rate, duration, run_dir))
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(figures.as_dict(), indent=2))
    else:
        typer.echo(generator_report(figures))


def _infra() -> tuple[str, str]:
    """Kafka's and FerretDB's endpoints from `bookify infra`, or a clear error."""
    infra = LocalInfra().status().services
    kafka, mongo = infra["kafka"].endpoint, infra["mongo"].endpoint
    if not kafka or not mongo:
        typer.secho(
            "error: Kafka and FerretDB are not running; start them with `bookify infra up`",
            err=True,
        )
        raise typer.Exit(1)
    return kafka, mongo


def _stage(stage: ServiceName, messages: int, resources: list[int], as_json: bool) -> None:
    kafka, mongo = _infra()
    run_dir = paths.default_run_dir(paths.repo_root())
    say = (lambda _: None) if as_json else print_progress
    figures = [
        run(
            bench_stage(
                stage,
                StageConfig(kafka, mongo, messages, count, run_dir),
                progress=say,
            )
        )
        for count in resources
    ]
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in figures], indent=2))
    else:
        typer.echo(drain_report(figures))


@app.command("decider")
def decider(
    messages: Messages = 20_000,
    resources: Resources = [1, 100],  # noqa: B006 - typer reads the default, never mutates it
    as_json: AsJson = False,
) -> None:
    """Booking alone: N commands on its topic, then its drain rate beside Kafka's."""
    _stage("booking", messages, resources, as_json)


@app.command("projector")
def projector(
    messages: Messages = 20_000,
    resources: Resources = [1, 100],  # noqa: B006 - typer reads the default, never mutates it
    as_json: AsJson = False,
) -> None:
    """The consumer alone: N events on its topic, then its drain rate beside Kafka's."""
    _stage("consumer", messages, resources, as_json)


@app.command("gateway")
def gateway(
    rate: Annotated[
        float,
        typer.Option(
            min=1,
            help="Bookings per second offered: above what the bare endpoint takes, so both "
            "figures are ceilings (the report warns when the bare one was not).",
        ),
    ] = 6000,
    duration: Annotated[float, typer.Option(min=1, max=600, help="Seconds of load.")] = 10,
    as_json: AsJson = False,
) -> None:
    """The gateway alone at saturation: accepted bookings/s beside a bare FastAPI 202."""
    kafka, mongo = _infra()
    run_dir = paths.default_run_dir(paths.repo_root())
    say = (lambda _: None) if as_json else print_progress
    figures = run(bench_gateway(kafka, mongo, run_dir, rate=rate, duration=duration, progress=say))
    typer.echo(json.dumps(figures.as_dict(), indent=2) if as_json else gateway_report(figures))


@app.command("verdict")
def verdict(
    pairs: Annotated[int, typer.Option(min=1, max=20, help="A/A pairs, and as many A/B.")] = 10,
    duration: Annotated[float, typer.Option(min=10, max=300, help="Seconds per run.")] = 60,
    rate: Annotated[float, typer.Option(min=1, help="Arrivals per second (open model).")] = 50,
    slowdown: Annotated[
        float,
        typer.Option(
            min=0.01, max=5, help="A/B: latency added on the gateway, as a share of the p50."
        ),
    ] = 0.20,
    baseline_runs: Annotated[
        int, typer.Option(min=1, max=5, help="Baseline runs per pair (a folder of runs).")
    ] = 1,
    host: Annotated[str, typer.Option(help="The gateway's base URL.")] = "http://127.0.0.1:8000",
    runs_root: Annotated[
        Path | None,
        typer.Option(help="Where the run folders go (default: runs/verdict-<UTC time>)."),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Run no load: judge again the pairs an earlier bench recorded in this folder "
            "(its --runs-root), with --baseline-runs per pair and the --slo file."
        ),
    ] = None,
    slo: Annotated[
        Path | None,
        typer.Option(
            help="With --replay: the SLO TOML whose [baseline] settings judge the runs "
            "(default: loadtests' slo.default.toml, which live runs use).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """False-positive and detection rates of `bookify load --baseline`, against a running
    `bookify up`: N A/A pairs (same code) and N A/B pairs (a known slowdown on the gateway)."""
    from loadtests.data import GatewayUnreachableError, check_gateway
    from loadtests.faultctl import FaultInjectionError
    from loadtests.gates import SloConfig

    say = (lambda _: None) if as_json else print_progress
    if slo is not None and replay is None:
        typer.secho(
            "error: --slo judges a --replay; a live bench uses the default SLO file, "
            "as `bookify load` does",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    if replay is not None:
        try:
            settings = SloConfig.from_toml(slo) if slo is not None else None
            figures = replay_verdict(
                replay, baseline_runs=baseline_runs, slo=settings, progress=say
            )
        except (OSError, ValueError) as exc:
            typer.secho(f"error: --replay {replay}: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(figures.as_dict(), indent=2) if as_json else verdict_report(figures))
        return

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config = VerdictBenchConfig(
        host=host.rstrip("/"),
        runs_root=runs_root or Path("runs") / f"verdict-{stamp}",
        pairs=pairs,
        duration=duration,
        rate=rate,
        slowdown=slowdown,
        baseline_runs=baseline_runs,
    )
    try:
        check_gateway(config.host)
        say(
            f"{config.runs()} runs of {duration:g} s (about "
            f"{config.runs() * (duration + 10) / 60:.0f} min), folders under {config.runs_root}"
        )
        figures = bench_verdict(config, progress=say)
    except (GatewayUnreachableError, FaultInjectionError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(figures.as_dict(), indent=2) if as_json else verdict_report(figures))


@app.command("push")
def push(
    levels: Annotated[
        str, typer.Option(help="Streams held at once, comma-separated (empty: skip that part).")
    ] = "1000,5000,10000",
    idle: Annotated[
        float, typer.Option(min=1, max=300, help="Seconds each level is held idle.")
    ] = 30,
    streams: Annotated[
        int, typer.Option(min=0, max=15_000, help="Streams open during delivery (0: skip it).")
    ] = 5000,
    rate: Annotated[float, typer.Option(min=1, help="Bookings per second decided.")] = 400,
    duration: Annotated[float, typer.Option(min=1, max=300, help="Seconds of bookings.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Open push streams on one gateway: memory per stream and idle CPU at each level, then
    decisions' delivery (Kafka timestamp to client read) with streams open under load."""

    try:
        counts = tuple(int(n) for n in levels.split(",") if n.strip())
    except ValueError:
        typer.secho(f"error: --levels takes numbers like 1000,5000, not {levels!r}", err=True)
        raise typer.Exit(2) from None
    if any(not 1 <= n <= 15_000 for n in counts):
        typer.secho("error: each of --levels is between 1 and 15000", err=True)
        raise typer.Exit(2)
    kafka, mongo = _infra()
    say = (lambda _: None) if as_json else print_progress
    config = PushBenchConfig(
        kafka, mongo, paths.default_run_dir(paths.repo_root()), levels=counts,
        idle_seconds=idle, streams=streams, rate=rate, duration=duration,
    )  # fmt: skip
    figures = run(bench_push(config, progress=say))
    typer.echo(json.dumps(figures.as_dict(), indent=2) if as_json else push_report(figures))
