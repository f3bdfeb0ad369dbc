"""`bookify bench`: benchmarks that print figures (not tests)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from bookify.bench import (
    BenchConfig,
    bench_ceiling,
    bench_generator,
    bench_pipeline,
    generator_report,
    report,
)
from bookify.infra import paths
from bookify.infra.local import LocalInfra, print_progress

app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)


@app.command("pipeline")
def pipeline(
    rate: Annotated[float, typer.Option(min=1, help="Bookings per second offered.")] = 50,
    duration: Annotated[float, typer.Option(min=1, max=600, help="Seconds of load.")] = 30,
    gateway: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    kafka: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap servers (default: from `bookify infra status`)."),
    ] = None,
) -> None:
    """Drive bookings at a fixed arrival rate against a running `bookify up`, then the ceiling."""
    bootstrap = kafka or LocalInfra().status().services["kafka"].endpoint
    if not bootstrap:
        typer.secho("error: no Kafka found; start the platform with `make up`", err=True)
        raise typer.Exit(1)
    config = BenchConfig(gateway=gateway, kafka_bootstrap=bootstrap, rate=rate, duration=duration)
    figures = asyncio.run(bench_pipeline(config, progress=print_progress))
    print_progress(f"ceiling: bare FastAPI 202 at {rate:g}/s for {duration:g} s")
    run_dir = paths.default_run_dir(paths.repo_root())
    ceiling = asyncio.run(bench_ceiling(rate, duration, run_dir))
    typer.echo(report(figures, ceiling))


@app.command("generator")
def generator(
    rate: Annotated[float, typer.Option(min=1, help="Arrivals per second offered.")] = 2000,
    duration: Annotated[float, typer.Option(min=1, max=600, help="Seconds per generator.")] = 10,
) -> None:
    """The open-model generator's requests/s per core and scheduling lag, beside wrk."""
    run_dir = paths.default_run_dir(paths.repo_root())
    print_progress(f"open model at {rate:g}/s, then wrk, {duration:g} s each, on a bare endpoint")
    try:
        figures = asyncio.run(bench_generator(rate, duration, run_dir))
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(generator_report(figures))
