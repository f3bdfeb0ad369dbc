"""Each room of the workspace imports only the rooms below it.

The ``bookify`` command is the top: the platform (``bookify_platform``), the benchmarks
(``bookify_bench``) and the tests' fixtures never import it, so a test stack does not load the
command, and the command can change without touching them. Every import is read from the
source (``ast``), those inside functions too, so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each package's source folder and the first-party packages it may import (itself included).
ROOMS: dict[str, tuple[str, frozenset[str]]] = {
    "shared": ("shared/src/shared", frozenset({"shared"})),
    "gateway": ("services/gateway/src/gateway", frozenset({"gateway", "shared"})),
    "booking": ("services/booking/src/booking", frozenset({"booking", "shared"})),
    "consumer": ("services/consumer/src/consumer", frozenset({"consumer", "shared"})),
    "loadtests": ("loadtests/src/loadtests", frozenset({"loadtests", "shared"})),
    "bookify_platform": (
        "platform/src/bookify_platform",
        frozenset({"bookify_platform", "shared"}),
    ),
    "bookify_bench": (
        "benchmarks/src/bookify_bench",
        frozenset({"bookify_bench", "bookify_platform", "loadtests", "shared"}),
    ),
}
FIRST_PARTY = frozenset({*ROOMS, "bookify", "tests"})
# What the test stacks are built from: the harness, never the command.
FIXTURES = ("tests/conftest.py", "tests/stack.py", "tests/chaos/conftest.py", "tests/support")


def first_party_imports(source: str) -> set[str]:
    """The first-party top-level packages ``source`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FIRST_PARTY


def _files(relative: str) -> list[Path]:
    path = ROOT / relative
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _arrows_out(relative: str, allowed: frozenset[str]) -> dict[str, set[str]]:
    files = _files(relative)
    assert files, f"{relative} holds no Python file"  # the scan really read the room
    return {
        str(path.relative_to(ROOT)): wrong
        for path in files
        if (wrong := first_party_imports(path.read_text(encoding="utf-8")) - allowed)
    }


@pytest.mark.parametrize("package", sorted(ROOMS))
def test_a_package_imports_only_the_rooms_below_it(package: str) -> None:
    folder, allowed = ROOMS[package]
    assert _arrows_out(folder, allowed) == {}


@pytest.mark.parametrize("fixture", FIXTURES)
def test_the_test_stacks_stand_on_the_harness_not_the_command(fixture: str) -> None:
    allowed = FIRST_PARTY - {"bookify", "bookify_bench"}
    assert _arrows_out(fixture, allowed) == {}


@pytest.mark.parametrize(
    ("source", "imported"),
    [
        ("from bookify.cli import app", {"bookify"}),
        ("def f():\n    import bookify.commands.bench", {"bookify"}),
        ("from bookify_platform.services import Platform", {"bookify_platform"}),
        ("import fastapi\nfrom shared import kafka", {"shared"}),
        ("from . import sibling", set()),
    ],
)
def test_the_check_sees_every_first_party_import(source: str, imported: set[str]) -> None:
    assert first_party_imports(source) == imported
