"""platform.json: what `bookify up` records for `bookify status`, in infra.json's format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bookify_platform.infra import StateFileError
from bookify_platform.infra.state import InfraState, ProcessRecord
from bookify_platform.services import SUPERVISOR, PlatformState


def test_restarts_survive_a_round_trip_and_older_files_without_them_read_as_zero():
    record = ProcessRecord(pid=7, marker="consumer", log="c.log", endpoint="http://x", restarts=2)
    assert InfraState.from_json(InfraState({"consumer": record}).to_json()).processes == {
        "consumer": record
    }

    old = {
        "schema": 1,
        "processes": {"kafka": {"pid": 1, "marker": "m", "log": "l", "endpoint": ""}},
    }
    assert InfraState.from_json(json.dumps(old)).processes["kafka"].restarts == 0


def test_a_corrupt_platform_file_says_what_to_do(tmp_path: Path):
    state = PlatformState(tmp_path)
    state.file.path.write_text("{")

    with pytest.raises(StateFileError, match=r"platform\.json: .*Delete it"):
        state.load()


def test_the_running_supervisor_is_alive_and_a_dead_one_is_not(tmp_path: Path):
    state = PlatformState(tmp_path)
    assert not state.supervisor_alive()

    state.record_supervisor(tmp_path / "logs" / "run")
    assert state.supervisor_alive()
    assert state.load().processes[SUPERVISOR].log == str(tmp_path / "logs" / "run")

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = ProcessRecord(pid=int(gone.stdout), marker="no-such-bookify-marker", log="", endpoint="")
    state.file.record(SUPERVISOR, dead)
    assert not state.supervisor_alive()

    state.clear()
    assert not state.file.path.exists()
