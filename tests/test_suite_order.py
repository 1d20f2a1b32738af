"""The suite's own arrangement (tests/conftest.py): the long tests are collected first, so the
xdist workers finish together, and the tests' child processes do not compile the package
again each time (a bytecode cache outside the source tree)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _long(item: pytest.Item) -> bool:
    folders = set(item.path.relative_to(item.config.rootpath).parts[:-1])
    return item.get_closest_marker("slow") is not None or bool(folders & {"e2e", "scale"})


def test_the_long_tests_are_collected_first(request: pytest.FixtureRequest) -> None:
    kinds = [_long(item) for item in request.session.items]
    assert kinds == sorted(kinds, reverse=True)


def test_child_processes_write_bytecode() -> None:
    flag = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.flags.dont_write_bytecode)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert flag == "0"
