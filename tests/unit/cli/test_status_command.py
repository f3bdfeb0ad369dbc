"""`bookify status` when `bookify up` does not run: it says so, and trusts no stale record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bookify.cli import app
from bookify.commands.status import NOT_RUNNING_EXIT
from bookify_platform import runlogs
from bookify_platform.infra.state import ProcessRecord
from bookify_platform.services import SUPERVISOR, PlatformState


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def status(run_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", *args, "--run-dir", str(run_dir)])
    return result.exit_code, result.stdout


def test_nothing_ever_ran_is_reported_with_its_exit_code(tmp_path: Path):
    code, out = status(tmp_path, "--json")

    assert code == NOT_RUNNING_EXIT
    body = json.loads(out)
    assert (body["running"], body["ready"], body["logs"]) == (False, False, None)
    assert set(body["services"]) == {"booking", "consumer", "gateway"}
    assert all(s["pid"] is None for s in body["services"].values())
    assert set(body["infra"]) == {"kafka", "mongo", "redis"}


def test_a_file_left_by_a_killed_up_is_ignored_and_the_last_logs_are_named(tmp_path: Path):
    log_dir = runlogs.new_run_folder(tmp_path)
    state = PlatformState(tmp_path)
    gone = dead_pid()
    state.file.record(
        SUPERVISOR, ProcessRecord(pid=gone, marker="bookify", log=str(log_dir), endpoint="")
    )
    state.file.record(
        "gateway",
        ProcessRecord(pid=gone, marker="gateway", log="g.log", endpoint="http://127.0.0.1:1"),
    )

    code, out = status(tmp_path, "--json")
    human_code, human = status(tmp_path)

    assert code == human_code == NOT_RUNNING_EXIT
    body = json.loads(out)
    assert body["running"] is False
    assert body["services"]["gateway"]["pid"] is None
    assert body["logs"] == str(log_dir)
    assert "not running" in human
    assert f"last run's logs: {log_dir}" in human


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_status_answers_without_a_repository_run_dir(tmp_path: Path, flag: list[str]):
    code, out = status(tmp_path / "never-created", *flag)
    assert code == NOT_RUNNING_EXIT
    assert out.strip()
