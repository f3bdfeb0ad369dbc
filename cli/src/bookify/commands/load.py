"""`bookify load <shape>`: a load test against a running gateway, judged by SLO gates."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from loadtests.data import GatewayUnreachableError
from loadtests.faultctl import DEFAULT_ERROR_PLAN, FaultInjectionError


class Shape(StrEnum):
    spike = "spike"
    stress = "stress"
    soak = "soak"
    error = "error"


class Follow(StrEnum):
    poll = "poll"
    push = "push"


EPILOG = """
Shapes: spike = baseline, 10x within seconds, back (recovery measured);
stress = step users up every --step-seconds until the step SLO breaks (capacity = last
healthy step); soak = constant; error = bad requests (expected 4xx = success, 5xx =
failure) with server-side fault injection switched on for the middle third.

Exit codes: 0 pass, 3 SLO breach, 4 regression against --baseline, 5 invalid run (the
load generator saturated its CPU), 1 error. Each run writes runs/<UTC time>-<shape>/ with
report.html, summary.json, windows.jsonl and samples.csv.gz.

Examples:
  bookify load spike --users 20 --duration 120
  bookify load soak --users 10 --duration 600 --baseline runs/20260101T120000Z-soak
  bookify load soak --users 10 --duration 60 --baseline runs/baseline-soak/   (several runs)
  bookify load stress --users 10 --step-users 10 --step-seconds 30 --processes 4
  bookify load soak --open --rate 200 --duration 120
  bookify load spike --open --rate 50 --follow push --baseline runs/<the same spike, polling>
  bookify load stress --host http://127.0.0.1:8000,http://127.0.0.1:8001   (two gateways)
  locust -f loadtests/src/loadtests/locustfile.py --host http://127.0.0.1:8000   (web UI)
"""


def load(
    shape: Annotated[Shape, typer.Argument(help="The load shape.", show_default=False)],
    users: Annotated[
        float | None,
        typer.Option(min=1, help="Base users (closed model). Default 10.", show_default=False),
    ] = None,
    open_model: Annotated[
        bool,
        typer.Option(
            "--open", help="Open model: arrivals at --rate per second, no coordinated omission."
        ),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option(min=0.1, help="Base arrivals per second (with --open).", show_default=False),
    ] = None,
    duration: Annotated[
        float, typer.Option(min=1, max=24 * 3600, help="Seconds (stress: the longest it runs).")
    ] = 60,
    baseline: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A previous run folder to compare with, or a folder of several runs of the "
            "same code (better: the verdict then uses their run-to-run spread).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="The gateway's base URL; several gateways comma-separated (as `bookify up "
            "--replicas` prints them): requests are spread over them, no proxy between."
        ),
    ] = "http://127.0.0.1:8000",
    slo: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="SLO TOML file. Default: loadtests' slo.default.toml.",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, max=256, help="Locust worker processes (Locust --processes).")
    ] = 1,
    step_users: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="stress: added per step. Default: the base level.", show_default=False
        ),
    ] = None,
    step_seconds: Annotated[float, typer.Option(min=1, help="stress: seconds per step.")] = 30,
    faults: Annotated[
        str,
        typer.Option(
            help=f"error: fault plan for the faults phase, e.g. {DEFAULT_ERROR_PLAN!r} "
            "(the default); 'none' to inject nothing."
        ),
    ] = "",
    booking_url: Annotated[
        str | None, typer.Option(help="booking's URL, for its fault switch (error shape).")
    ] = "http://127.0.0.1:8001",
    consumer_url: Annotated[
        str | None, typer.Option(help="consumer's URL, for its fault switch (error shape).")
    ] = "http://127.0.0.1:8002",
    window: Annotated[
        float, typer.Option(min=0.5, help="Recorder window in seconds (baseline: per window).")
    ] = 5.0,
    exporter_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Locust /metrics port (0: off).")
    ] = 9646,
    seed_resources: Annotated[int, typer.Option(min=1, help="Resources created at start.")] = 20,
    principals: Annotated[int, typer.Option(min=1, help="Distinct principals (tokens).")] = 50,
    think_time: Annotated[
        str, typer.Option(help="Closed model: seconds between a user's flows, min,max.")
    ] = "0.5,1.5",
    runs_root: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    run_dir: Annotated[
        Path | None, typer.Option(help="Exact run folder (default: a new one under runs/).")
    ] = None,
    progress_every: Annotated[
        float, typer.Option(min=0.5, help="Seconds between progress lines.")
    ] = 5.0,
    mix: Annotated[
        str,
        typer.Option(
            help="A ticket-drop crowd instead of the shop's flows: `default`, or weights like "
            "book=60,retry=6,cancel=8,read_booking=14,read_seats=10,rebook=2 "
            "(see `bookify bench pipeline --help`)."
        ),
    ] = "",
    follow: Annotated[
        Follow,
        typer.Option(
            help="How a client learns its booking's decision: poll GET /v1/bookings/{id}, or "
            "push (read GET /v1/bookings/{id}/events). Compare the two with --baseline: the "
            "report puts requests/s, gateway CPU and 202 -> known side by side."
        ),
    ] = Follow.poll,
) -> None:
    """Run a load test against the gateway; the exit code is the SLO/baseline verdict."""
    # Imported here: numpy, scipy and locust are slow to load for every other command.
    from loadtests.gates import SloConfigError
    from loadtests.mix import MixError, parse_mix
    from loadtests.options import LoadOptions
    from loadtests.runner import run

    if baseline is not None:
        from loadtests.report import baseline_runs

        try:
            baseline_runs(baseline)  # now, not after the run
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--baseline") from None
    if open_model and rate is None:
        raise typer.BadParameter("--open needs --rate (arrivals per second)", param_hint="--rate")
    if rate is not None and not open_model:
        raise typer.BadParameter("--rate is for the open model: add --open", param_hint="--rate")
    if open_model and users is not None:
        raise typer.BadParameter("--users is for the closed model; drop --open or --users")
    if open_model and processes > 1:
        raise typer.BadParameter("--processes applies to Locust (closed model) only")
    options = LoadOptions(
        shape=shape.value,
        host=host.rstrip("/"),
        users=users if users is not None else 10,
        rate=rate if open_model else None,
        duration=duration,
        step=step_users,
        step_seconds=step_seconds,
        processes=processes,
        slo=slo,
        baseline=baseline,
        runs_root=runs_root,
        run_dir=run_dir,
        window=window,
        exporter_port=exporter_port,
        seed_resources=seed_resources,
        principals=principals,
        think=think_time,
        faults=faults,
        booking_url=booking_url or None,
        consumer_url=consumer_url or None,
        progress_every=progress_every,
        mix=mix,
        follow=follow.value,
    )
    try:
        if mix:
            parse_mix(mix)  # a bad --mix fails here, before any seeding
        code = run(options, say=typer.echo)
    except GatewayUnreachableError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except (SloConfigError, FaultInjectionError, MixError, ValueError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
