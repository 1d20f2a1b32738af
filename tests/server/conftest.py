"""Fixtures: a fake clock and an in-process server over a fresh data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .helpers import FakeClock, Harness, make_config, running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest_asyncio.fixture
async def server(data_dir: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async with running(make_config(data_dir), clock) as h:
        yield h
