"""No code of ours imports a private module or name of a third-party package.

A private name (``fastapi._compat``, ``from starlette.routing import _thing``) may change in
any release without notice: the gateway's old fast path broke on a FastAPI minor release.
Every ``.py`` under the workspace's code and tests is parsed; a dunder (``__version__``) is
public.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("shared", "services", "platform", "benchmarks", "cli", "loadtests", "tests")
FIRST_PARTY = frozenset(
    {
        "shared",
        "gateway",
        "booking",
        "consumer",
        "bookify_platform",
        "bookify_bench",
        "bookify",
        "loadtests",
        "tests",
    }
)


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in FIRST_PARTY and top not in sys.stdlib_module_names


def private_imports(source: str) -> list[str]:
    """Each private third-party import in ``source``, as ``line: what``."""
    found = []
    modules: set[str] = set()  # names bound by a third-party import, for name._private
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _third_party(alias.name):
                    continue
                modules.add(alias.asname or alias.name.split(".")[0])
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not _third_party(node.module):
                continue
            modules.update(alias.asname or alias.name for alias in node.names)
            names = [alias.name for alias in node.names]
            if any(_private(part) for part in node.module.split(".")) or any(
                _private(name) for name in names
            ):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def python_files() -> list[Path]:
    return sorted(
        path
        for top in SCANNED
        for path in (ROOT / top).rglob("*.py")
        if not any(part.startswith(".") or part == "node_modules" for part in path.parts)
    )


def test_no_code_imports_a_private_name_of_a_third_party_package() -> None:
    files = python_files()
    found = {
        str(path.relative_to(ROOT)): hits
        for path in files
        if (hits := private_imports(path.read_text(encoding="utf-8")))
    }

    assert len(files) > 100  # the scan really read the tree
    assert found == {}


@pytest.mark.parametrize(
    "source",
    [
        "from fastapi._compat import ModelField",
        "import starlette._exception_handler",
        "import starlette._utils as utils",
        "from fastapi.routing import APIRoute, _IncludedRouter",
        "import aiokafka\naiokafka._private()",
        "from pydantic import main as m\nm._object_setattr",
    ],
)
def test_the_check_finds_a_private_import(source: str) -> None:
    assert private_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from fastapi import FastAPI",
        "from fastapi import __version__",
        "from collections import _count_elements",  # the standard library is not third-party
        "from gateway._internal import x",  # nor is our own code
        "from . import _sibling",
        "import os\nos._exit(0)",
        "x = object()\nx._private",
    ],
)
def test_the_check_passes_public_imports(source: str) -> None:
    assert private_imports(source) == []
