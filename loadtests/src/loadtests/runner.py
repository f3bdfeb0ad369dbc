"""Running a load test: Locust (closed model) as a subprocess, or the open model in-process.

:func:`run_locust` starts ``locust -f locustfile.py --headless`` with the Bookify options
(the locustfile does the recording, the report and the exit code; ``--processes N`` gives
Locust N worker processes). :func:`run_open` drives the same flows at a fixed *arrival
rate* per shape segment with :func:`loadtests.openmodel.run_open_model`, so a slow server
shows up as latency (measured from each arrival's intended start) and as dropped arrivals,
never as a quietly lower load. Both write ``runs/<UTC timestamp>-<shape>/`` and return the
exit code of ``report.finalize``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from loadtests.data import check_gateway
from loadtests.options import LoadOptions, Say

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


# ---------------------------------------------------------------------------- Locust
def locust_command(options: LoadOptions, run_dir: Path) -> list[str]:
    """The headless Locust command line for ``options``."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--loglevel", "WARNING",
        "--host", options.host,
        "--shape", options.shape,
        "--shape-users", f"{options.users:g}",
        "--shape-duration", f"{options.duration:g}",
        "--step-seconds", f"{options.step_seconds:g}",
        "--run-dir", str(run_dir),
        "--run-id", options.run_id,
        "--slo", str(options.slo_path()),
        "--window", f"{options.window:g}",
        "--exporter-port", str(options.exporter_port),
        "--seed-resources", str(options.seed_resources),
        "--principals", str(options.principals),
        "--think-time", options.think,
        "--progress-every", f"{options.progress_every:g}",
        "--follow", options.follow,
    ]  # fmt: skip
    if options.step:
        cmd += ["--step-users", f"{options.step:g}"]
    if options.baseline is not None:
        cmd += ["--baseline", str(options.baseline)]
    if options.faults:
        cmd += ["--faults", options.faults]
    if options.booking_url:
        cmd += ["--booking-url", options.booking_url]
    if options.consumer_url:
        cmd += ["--consumer-url", options.consumer_url]
    if options.processes > 1:
        cmd += ["--processes", str(options.processes)]
    if options.mix:
        cmd += ["--mix", options.mix]
    return cmd


def run_locust(options: LoadOptions, say: Say = print) -> int:
    """Run Locust headless until the shape ends; its exit code is the gates' verdict."""
    check_gateway(options.host)
    run_dir = options.resolved_run_dir()
    cmd = locust_command(options, run_dir)
    say(f"locust: {options.shape} shape against {options.host}, run folder {run_dir}")
    # The shape ends the run; this bound only catches a hung Locust (seeding, a stuck worker).
    limit = options.duration + 180
    # Locust's own process must monkey-patch (see loadtests._locust).
    env = {k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # noqa: S603 - our own argv
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        say(f"error: locust still running {limit:.0f} s after start; stopping it")
        _stop_group(proc)
        return 1
    except KeyboardInterrupt:
        # Locust finalizes the run folder on SIGINT/SIGTERM; give it the chance.
        _stop_group(proc, signal.SIGINT)
        return proc.returncode if proc.returncode is not None else 130
    finally:
        if proc.poll() is None:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------- open model
def run_open(options: LoadOptions, say: Say = print) -> int:
    """The open-model run (see :mod:`loadtests.openrun`); the exit code of ``finalize``."""
    check_gateway(options.host)  # before the slow imports: a missing stack fails at once
    # Imported here: it loads numpy/scipy/locust, which the Locust path leaves to its child.
    from loadtests.openrun import run_open_model_test

    return run_open_model_test(options, say)


def run(options: LoadOptions, say: Say = print) -> int:
    """Either model, by ``options.rate``."""
    return run_open(options, say) if options.open_model else run_locust(options, say)


__all__ = ["locust_command", "run", "run_locust", "run_open"]
