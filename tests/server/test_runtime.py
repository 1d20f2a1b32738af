"""`runtime.tune_gc`: the server process's garbage collector settings; an application built
by `create_app` alone (tests, embedders) leaves the collector as it is."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from doorless.server.app import create_app
from doorless.server.config import ServerConfig
from doorless.server.runtime import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Undo whatever a test did to this process's collector."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_is_alive_and_makes_full_collections_rarer(
    restored_gc: None,
) -> None:
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > 10  # rarer than CPython's default


def test_an_app_built_alone_leaves_the_collector_as_it_is(
    tmp_path: Path, restored_gc: None
) -> None:
    threshold = gc.get_threshold()
    application = create_app(ServerConfig(tmp_path), background_sweeper=False)

    async def lifespan() -> None:
        async with application.router.lifespan_context(application):
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == threshold

    asyncio.run(lifespan())
