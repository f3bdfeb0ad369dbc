"""Per-run log folders of `bookify up`: a new folder per run, `latest`, and pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bookify_platform import runlogs

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_each_run_gets_a_utc_stamped_folder_and_latest_points_at_it(tmp_path: Path):
    first = runlogs.new_run_folder(tmp_path, now=T0)
    second = runlogs.new_run_folder(tmp_path, now=T0 + timedelta(minutes=1))

    assert first == tmp_path / "logs" / "20260102T030405Z"
    assert second.name == "20260102T030505Z"
    assert first.is_dir()  # the earlier run's logs are still there
    assert runlogs.latest_run_folder(tmp_path) == second
    assert (tmp_path / "logs" / "latest").resolve() == second.resolve()


def test_two_runs_in_the_same_second_do_not_share_a_folder(tmp_path: Path):
    folders = [runlogs.new_run_folder(tmp_path, now=T0) for _ in range(3)]

    assert [f.name for f in folders] == [
        "20260102T030405Z",
        "20260102T030405Z-2",
        "20260102T030405Z-3",
    ]
    assert runlogs.latest_run_folder(tmp_path) == folders[-1]


def test_only_the_newest_folders_are_kept_and_nothing_else_is_touched(tmp_path: Path):
    root = tmp_path / "logs"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    (root / "keep-me").mkdir()

    made = [runlogs.new_run_folder(tmp_path, now=T0 + timedelta(hours=i), keep=3) for i in range(5)]

    assert runlogs.run_folders(root) == made[-3:]
    assert not made[0].exists()
    assert not made[1].exists()
    assert (root / "notes.txt").read_text() == "mine"
    assert (root / "keep-me").is_dir()
    assert runlogs.latest_run_folder(tmp_path) == made[-1]


def test_folders_of_one_second_sort_by_their_number_not_as_text(tmp_path: Path):
    root = tmp_path / "logs"
    for name in ("20260102T030405Z-10", "20260102T030405Z-2", "20260102T030405Z"):
        (root / name).mkdir(parents=True)

    runlogs.prune(root, keep=1)

    assert [f.name for f in runlogs.run_folders(root)] == ["20260102T030405Z-10"]


def test_prune_refuses_to_delete_the_current_run_too(tmp_path: Path):
    with pytest.raises(ValueError, match="keep"):
        runlogs.prune(tmp_path, keep=0)


def test_no_run_yet_means_no_latest_folder(tmp_path: Path):
    assert runlogs.latest_run_folder(tmp_path) is None
    assert runlogs.run_folders(tmp_path / "logs") == []
