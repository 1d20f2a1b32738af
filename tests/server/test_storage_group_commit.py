"""SQLite group commit: concurrent writes share one COMMIT, each still all-or-nothing; acks
arriving together share one write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from doorless.server.storage.base import Delivery, IdempotencyConflict
from doorless.server.storage.sqlite import SQLiteStorage

from .helpers import device_record, sqlite_store

pytestmark = pytest.mark.asyncio


async def test_concurrent_sends_share_commits_and_a_refused_one_rolls_back_alone(
    data_dir: Path,
) -> None:
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2, 3):
            await store.create_account(device_record(n), None, 1)
        a, b, c = (device_record(n).device_id for n in (1, 2, 3))
        await store.deliver(a, "taken", b"d0", [Delivery(b"first", (b,))], None, 1)
        conn = store._conn
        assert conn is not None
        statements: list[str] = []
        conn.set_trace_callback(statements.append)

        async def send(i: int) -> object:
            if i == 7:  # the same message id with other content: refused
                return await store.deliver(a, "taken", b"other", [Delivery(b"x", (b, c))], None, 1)
            return await store.deliver(
                a, f"m-{i}", b"d%d" % i, [Delivery(b"%d" % i, (b, c))], None, 1
            )

        results = await asyncio.gather(*(send(i) for i in range(40)), return_exceptions=True)
        conn.set_trace_callback(None)

        assert isinstance(results[7], IdempotencyConflict)
        assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 7)
        commits = sum(s == "COMMIT" for s in statements)
        assert 1 <= commits < 39  # 39 accepted sends, fewer fsyncs
        # Every accepted send is queued for both recipients; the refused one left nothing.
        for device in (b, c):
            queued = await store.fetch(device, 0, 100)
            bodies = {m.data for m in queued}
            assert bodies >= {b"%d" % i for i in range(40) if i != 7}
            assert b"x" not in bodies
        assert conn.execute("SELECT COUNT(*) FROM sent").fetchone()[0] == 40  # 39 + "taken"
    finally:
        await store.close()


async def test_an_ack_of_many_seqs_releases_each_payload_once(data_dir: Path) -> None:
    async with sqlite_store(data_dir / "db.sqlite3") as (store, (a, b)):
        for i in range(5):
            await store.deliver(a, f"m-{i}", b"d", [Delivery(b"%d" % i, (a, b))], None, 1)
        seqs_b = [m.seq for m in await store.fetch(b, 0, 10)]
        assert await store.ack(b, [*seqs_b, 999]) == 5  # an unknown seq is ignored
        conn = store._conn
        assert conn is not None
        assert conn.execute("SELECT SUM(remaining), COUNT(*) FROM payloads").fetchone() == (5, 5)
        seqs_a = [m.seq for m in await store.fetch(a, 0, 10)]
        assert await store.ack(a, seqs_a[:3]) == 3
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 2
        assert await store.ack(a, seqs_a) == 2  # acked twice: counted once
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 0


async def test_reads_do_not_wait_for_a_commit_in_flight(data_dir: Path) -> None:
    """A read (a push's fetch, a send's context) is answered while a batch of writes waits for
    its COMMIT, and sees the queue as it was before them; once the write is answered, a read
    sees it."""
    async with sqlite_store(data_dir / "db.sqlite3") as (store, (a, b)):
        await store.deliver(a, "m-0", b"d0", [Delivery(b"0", (b,))], None, 1)
        executor = store._executor
        assert executor is not None
        # Hold the storage thread, where the batch's COMMIT runs.
        release = threading.Event()
        executor.submit(release.wait)
        write = asyncio.ensure_future(
            store.deliver(a, "m-1", b"d1", [Delivery(b"1", (b,))], None, 1)
        )
        await asyncio.sleep(0.05)
        read = await asyncio.wait_for(store.fetch(b, 0, 10), 1)
        assert not write.done()
        assert [m.data for m in read] == [b"0"]  # not the uncommitted write
        release.set()
        await write
        assert [m.data for m in await store.fetch(b, 0, 10)] == [b"0", b"1"]


async def test_a_write_waits_for_another_process_lock_without_blocking_reads(
    data_dir: Path,
) -> None:
    """Another process holding the write lock (``doorless invite`` does) makes a batch wait for
    it on the storage thread, not on the event loop: reads go on, and the write commits once
    the lock is released."""
    path = data_dir / "db.sqlite3"
    store = SQLiteStorage(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        for n in (1, 2):
            await store.create_account(device_record(n), None, 1)
        a, b = device_record(1).device_id, device_record(2).device_id
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(
            store.deliver(a, "m-1", b"d1", [Delivery(b"1", (b,))], None, 1)
        )
        await asyncio.sleep(0.2)
        assert await asyncio.wait_for(store.fetch(b, 0, 10), 1) == []
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, 5)
        assert [m.data for m in await store.fetch(b, 0, 10)] == [b"1"]
    finally:
        other.close()
        await store.close()


async def test_acks_from_many_devices_at_once_are_one_write(data_dir: Path) -> None:
    """Ack frames that arrive together (from any devices) are coalesced into one operation of
    a group commit: one DELETE over all their entries, not a savepoint and statements each;
    each frame still gets its own count, and each payload is released once."""
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        devices = [device_record(n).device_id for n in range(1, 21)]
        for n in range(1, 21):
            await store.create_account(device_record(n), None, 1)
        sender, receivers = devices[0], devices[1:]
        for i in range(3):
            await store.deliver(sender, f"m-{i}", b"d", [Delivery(b"%d" % i, receivers)], None, 1)
        seqs = {d: [m.seq for m in await store.fetch(d, 0, 10)] for d in receivers}
        conn = store._conn
        assert conn is not None
        statements: list[str] = []
        conn.set_trace_callback(statements.append)

        frames = [(d, seqs[d]) for d in receivers]
        frames.append((receivers[0], [seqs[receivers[0]][0], 999]))  # a repeat and an unknown
        counts = await asyncio.gather(*(store.ack(d, s) for d, s in frames))
        conn.set_trace_callback(None)

        assert counts == [3] * len(receivers) + [0]  # a repeated entry counts for the first
        deletes = [s for s in statements if s.startswith("DELETE FROM queue")]
        assert 1 <= len(deletes) <= 2  # the first frame at once, the rest together
        assert sum(s.startswith("SAVEPOINT") for s in statements) == len(deletes)
        assert conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 0
    finally:
        await store.close()


async def test_a_failed_commit_fails_every_write_of_its_batch_and_stores_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT that fails (a full disk, an I/O error) is every write's answer, nothing of
    the batch stays, and the next batch works; even a ROLLBACK that fails too leaves no caller
    waiting."""
    from doorless.server.storage import sqlite as dialect

    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2):
            await store.create_account(device_record(n), None, 1)
        a, b = device_record(1).device_id, device_record(2).device_id
        real_commit, real_rollback = dialect._commit, dialect._rollback

        def disk_full(conn: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        async def sends(first: int) -> list[object]:
            return await asyncio.wait_for(
                asyncio.gather(
                    *(
                        store.deliver(a, f"m-{i}", b"d%d" % i, [Delivery(b"%d" % i, (b,))], None, 1)
                        for i in range(first, first + 3)
                    ),
                    return_exceptions=True,
                ),
                5,
            )

        monkeypatch.setattr(dialect, "_commit", disk_full)
        results = await sends(0)
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        monkeypatch.setattr(dialect, "_commit", real_commit)
        assert await store.fetch(b, 0, 10) == []
        assert len([r for r in await sends(10) if not isinstance(r, BaseException)]) == 3
        assert [m.data for m in await store.fetch(b, 0, 10)] == [b"10", b"11", b"12"]

        monkeypatch.setattr(dialect, "_commit", disk_full)
        monkeypatch.setattr(dialect, "_rollback", disk_full)
        with pytest.raises(sqlite3.OperationalError):  # answered, not left waiting
            await asyncio.wait_for(
                store.deliver(a, "m-20", b"d20", [Delivery(b"20", (b,))], None, 1), 5
            )
        assert store._conn is not None
        real_rollback(store._conn)
    finally:
        monkeypatch.undo()
        await store.close()
