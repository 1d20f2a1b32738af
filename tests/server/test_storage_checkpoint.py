"""SQLite checkpoints: in the background, never inside a writer's COMMIT, and the WAL still
starts again from its beginning (`doorless.server.storage.sqlite`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from doorless.server.storage import sqlite as dialect
from doorless.server.storage.base import Delivery
from doorless.server.storage.sqlite import SQLiteStorage

from .helpers import sqlite_store

pytestmark = pytest.mark.asyncio

PAGE = 4096


async def _send_pages(store: SQLiteStorage, a: str, b: str, prefix: str, count: int) -> None:
    """``count`` sends, each at least a page of the WAL, all answered."""
    await asyncio.wait_for(
        asyncio.gather(
            *(
                store.deliver(a, f"{prefix}-{i}", b"d", [Delivery(bytes(PAGE), (b,))], None, 1)
                for i in range(count)
            )
        ),
        30,
    )


async def _cycle_done(store: SQLiteStorage) -> None:
    while store._checkpointing is not None:
        await asyncio.wait_for(asyncio.shield(store._checkpointing), 10)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_writes_commit_while_a_checkpoint_is_running_and_no_commit_checkpoints(
    data_dir: Path,
) -> None:
    """With the checkpointer's thread held (a slow checkpoint), more than SQLite's default
    1,000 pages of writes all commit, and none of their COMMITs copied anything into the
    database file (SQLite's default would have, inside a COMMIT the next writes wait for)."""
    path = data_dir / "db.sqlite3"
    held = threading.Event()
    async with sqlite_store(path) as (store, (a, b)):
        try:
            await _cycle_done(store)
            assert store._checkpoint_thread is not None
            store._checkpoint_thread.submit(held.wait)
            before = _digest(path)
            await _send_pages(store, a, b, "m", 1200)
            assert _digest(path) == before
            assert len(await store.fetch(b, 0, 2000)) == 1200
        finally:  # the store closes only once its checkpointer's thread is free
            held.set()


async def test_the_wal_starts_again_after_each_cycle(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Background passes alone never let SQLite restart the WAL while writes go on; the last
    step between two batches does, so the WAL stays the size of one cycle's writes."""
    monkeypatch.setattr(dialect, "_CHECKPOINT_PERIOD", 0.0)
    path = data_dir / "db.sqlite3"
    wal = Path(f"{path}-wal")
    async with sqlite_store(path) as (store, (a, b)):
        # Writes without a pause: a cycle never finds the WAL without new frames at its end.
        await _send_pages(store, a, b, "m", 3000)
        # 3,000+ pages: without a restart the WAL would hold them all.
        assert wal.stat().st_size < 1000 * (PAGE + 24)


async def test_a_failed_checkpoint_is_logged_and_the_next_cycle_runs(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint that fails (an I/O error) is said in the log; writes go on, and the next
    cycle checkpoints."""
    monkeypatch.setattr(dialect, "_CHECKPOINT_PERIOD", 0.0)
    path = data_dir / "db.sqlite3"
    real = dialect._passive_checkpoint

    def disk_error(conn: sqlite3.Connection) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    async with sqlite_store(path) as (store, (a, b)):
        await _cycle_done(store)
        monkeypatch.setattr(dialect, "_passive_checkpoint", disk_error)
        with caplog.at_level(logging.WARNING, logger="doorless.server"):
            await _send_pages(store, a, b, "m", 5)
            await _cycle_done(store)
        failed = [r for r in caplog.records if r.getMessage() == "checkpoint failed"]
        assert failed and failed[0].fields["exception"] == "sqlite3.OperationalError"  # type: ignore[attr-defined]
        before = _digest(path)
        monkeypatch.setattr(dialect, "_passive_checkpoint", real)
        await _send_pages(store, a, b, "n", 5)
        await _cycle_done(store)
        assert _digest(path) != before  # backfilled
        assert len(await store.fetch(b, 0, 20)) == 10
