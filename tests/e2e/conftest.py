"""The end-to-end tests' shared fixture: one real ``doorless server`` process per test (a test
that needs other server flags, like the calls' relay port, defines its own ``server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()
