"""Fixtures: a fake clock and an in-process server over a fresh data directory.

In-process tests keep their data directory in memory (``/dev/shm`` where there is one): the
server's per-transaction fsync is what makes it durable, and on a shared disk it is also what
makes a test slow. Tests of durability itself (the real server process) use the disk.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from .helpers import FakeClock, Harness, make_config, running

_SHM = Path("/dev/shm")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    if _SHM.is_dir():
        root = Path(tempfile.mkdtemp(prefix="doorless-test-", dir=_SHM))
        try:
            yield root / "data"
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        yield tmp_path / "data"


@pytest_asyncio.fixture
async def server(data_dir: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async with running(make_config(data_dir), clock) as h:
        yield h
