"""How a failed chaos run words its verdict (tests/chaos/traffic.py): grouped, and quoting
what the services logged."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chaos.traffic import grouped, warnings_in


def test_bookings_alike_make_one_line_per_kind() -> None:
    lines = grouped(
        "{n} bookings are {0} through the API, {1} in the ledger: {examples}",
        [(("pending", "confirmed"), f"b{i}") for i in range(7)] + [(("pending", "rejected"), "r1")],
        shown=3,
    )
    assert lines == [
        "7 bookings are pending through the API, confirmed in the ledger: b0, b1, b2",
        "1 bookings are pending through the API, rejected in the ledger: r1",
    ]


def test_nothing_to_group_is_no_line() -> None:
    assert grouped("{n}: {examples}", []) == []


def _log(path: Path, *entries: dict[str, str]) -> Path:
    path.write_text(
        "\n".join([json.dumps(e) for e in entries] + ["not json, e.g. a traceback line"])
    )
    return path


def test_a_log_is_quoted_by_its_distinct_warnings_most_recent_last(tmp_path: Path) -> None:
    log = _log(
        tmp_path / "consumer.log",
        {"level": "error", "logger": "aiokafka", "event": "refused", "timestamp": "t1"},
        {"level": "info", "logger": "aiokafka", "event": "Discovered coordinator"},
        {"level": "warning", "logger": "booking", "event": "event_acks_waiting", "timestamp": "t2"},
        {"level": "error", "logger": "aiokafka", "event": "refused", "timestamp": "t3"},
    )
    assert warnings_in(log, shown=5).splitlines() == [
        "consumer.log at WARNING and above (last 2 distinct events):",
        "  1x, last at t2: booking: event_acks_waiting",
        "  2x, last at t3: aiokafka: refused",
    ]
    assert warnings_in(log, shown=1).splitlines()[1:] == ["  2x, last at t3: aiokafka: refused"]


def test_a_quiet_or_missing_log_says_nothing(tmp_path: Path) -> None:
    quiet = _log(tmp_path / "gateway.log", {"level": "info", "event": "started"})
    assert warnings_in(quiet) == ""
    assert warnings_in(tmp_path / "absent.log") == ""
