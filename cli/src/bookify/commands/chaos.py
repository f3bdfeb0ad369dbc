"""`bookify chaos`: the nemesis against a running `bookify up`, with a verdict per invariant."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bookify_platform.infra import paths
from bookify_platform.infra.errors import InfraError

EPILOG = (
    "Each run: the crowd's traffic (--mix) throughout, --faults faults at seeded random times in "
    "the first --duration seconds (freeze a process with SIGSTOP, kill one with SIGKILL and "
    "start it again, or restart Kafka, FerretDB and Redis together; they may overlap), then "
    "a heal phase. The history (every operation's invoke and outcome) goes to --history-dir as "
    "JSON lines; the checker then reads it and the stores. Exit code 0 when every invariant "
    "held in every run, 1 otherwise. Replay a run with its seed."
)


def chaos(
    seed: Annotated[
        int | None,
        typer.Option(
            help="The schedule's seed (default: a random one, printed).", show_default=False
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, max=100, help="Runs, with seeds seed, seed+1 ...")
    ] = 1,
    duration: Annotated[
        float, typer.Option(min=10, max=3600, help="Seconds of faults in each run.")
    ] = 60,
    faults: Annotated[
        int | None,
        typer.Option(
            min=1, max=500, help="Faults per run (default: one per 10 s).", show_default=False
        ),
    ] = None,
    faults_at: Annotated[
        str,
        typer.Option(
            help="Faults by hand instead of at random, to replay an outage: "
            "kill:booking@5,pause:kafka@12:3.5,restart_infra@30 (seconds into the fault phase)."
        ),
    ] = "",
    rate: Annotated[
        float, typer.Option(min=1, max=2000, help="Client operations per second.")
    ] = 40,
    mix: Annotated[
        str, typer.Option(help="The crowd's operations (see `bookify bench pipeline --help`).")
    ] = "default",
    heal_within: Annotated[
        float, typer.Option(min=10, help="Seconds after the faults for every 202 to be terminal.")
    ] = 120,
    history_dir: Annotated[
        Path, typer.Option(help="Where each run's history (JSON lines) is written.")
    ] = Path("runs"),
    run_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="BOOKIFY_RUN_DIR",
            help="`bookify up`'s run dir (default: <repo>/.cache/run).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcomes as JSON.")] = False,
) -> None:
    """Fault a running `bookify up` at random under a crowd's traffic, and check the invariants."""
    # Imported here: the nemesis loads the load-test stack, slow for every other command.
    from bookify.chaos import UpProcesses
    from loadtests.chaos.nemesis import Plan, run_nemesis, table
    from loadtests.chaos.schedule import parse_faults, schedule
    from loadtests.mix import MixError, parse_mix
    from loadtests.openmodel import run

    try:
        weights = parse_mix(mix)
        processes = UpProcesses((run_dir or paths.default_run_dir(paths.repo_root())).resolve())
        by_hand = parse_faults(faults_at, processes.targets()) if faults_at else None
    except (MixError, InfraError, ValueError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    first = seed if seed is not None else random.SystemRandom().randrange(1_000_000)
    say: Callable[[str], None] = (lambda _: None) if as_json else typer.echo
    history_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for n in range(first, first + seeds):
        plan = Plan(
            seed=n,
            faults=by_hand or schedule(n, processes.targets(), seconds=duration, faults=faults),
            fault_seconds=duration,
            rate=rate,
            heal_within=heal_within,
            weights=weights,
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        history = history_dir / f"chaos-{stamp}-seed{n}.jsonl"
        say(f"seed {n} (replay: bookify chaos --seed {n}); history {history}")
        try:
            outcome = run(
                run_nemesis(plan, processes, processes.target(), history_path=history, say=say)
            )
        except (InfraError, RuntimeError) as exc:
            typer.secho(f"error: seed {n}: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        outcomes.append(outcome)
        say(table(outcome))
    if as_json:
        typer.echo(json.dumps([o.as_dict() for o in outcomes], indent=2))
    elif seeds > 1:
        passed = sum(o.ok for o in outcomes)
        heals = [o.heal_seconds for o in outcomes if o.heal_seconds is not None]
        typer.echo(
            f"{passed} of {seeds} seeds passed; time to heal "
            + (f"{min(heals):.1f}-{max(heals):.1f} s" if heals else "never")
        )
    raise typer.Exit(0 if all(o.ok for o in outcomes) else 1)
