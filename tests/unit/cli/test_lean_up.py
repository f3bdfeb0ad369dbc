"""`bookify up` imports only what it runs: it supervises for hours and keeps every module it
loaded (docs/PERFORMANCE.md, "The bookify up process's memory")."""

from __future__ import annotations

import json
import subprocess
import sys

# What the other commands, the services and their clients load, and `up` never needs.
NOT_FOR_UP = (
    "aiokafka",
    "bookify_bench",
    "cryptography",
    "faststream",
    "jwt",
    "loadtests",
    "locust",
    "numpy",
    "pydantic_settings",
    "pymongo",
    "scipy",
    "shared.auth",
    "shared.kafka_security",
    "shared.settings",
    "shared.telemetry",
)


def modules_loaded_for(command: str) -> set[str]:
    """The modules a fresh process holds once `bookify <command>` is registered."""
    script = (
        "import json, sys, bookify.cli as cli\n"
        f"cli.build([{command!r}])\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(f"{h}.") for h in NOT_FOR_UP)}


def test_up_loads_none_of_the_other_commands_modules() -> None:
    assert heavy(modules_loaded_for("up")) == set()


def test_the_check_names_a_heavy_module_and_its_submodules_only() -> None:
    loaded = {"aiokafka", "aiokafka.admin", "shared.settings", "shared.urls", "scipy_like", "typer"}
    assert heavy(loaded) == {"aiokafka", "aiokafka.admin", "shared.settings"}
