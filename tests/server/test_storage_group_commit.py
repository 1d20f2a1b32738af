"""SQLite group commit: concurrent writes share one COMMIT, each still all-or-nothing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from doorless.server.storage.base import Delivery, DeviceRecord, IdempotencyConflict
from doorless.server.storage.sqlite import SQLiteStorage

pytestmark = pytest.mark.asyncio


def _device(n: int) -> DeviceRecord:
    return DeviceRecord(
        device_id=f"{n:032x}",
        username=f"user{n}",
        device_key=bytes([n]) * 32,
        approved_by=None,
        approval_signature=b"sig",
        created_at=1,
    )


async def test_concurrent_sends_share_commits_and_a_refused_one_rolls_back_alone(
    data_dir: Path,
) -> None:
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2, 3):
            await store.create_account(_device(n), None, 1)
        a, b, c = (_device(n).device_id for n in (1, 2, 3))
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
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2):
            await store.create_account(_device(n), None, 1)
        a, b = _device(1).device_id, _device(2).device_id
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
    finally:
        await store.close()


async def test_the_reads_of_a_batch_do_not_wait_for_its_writes(data_dir: Path) -> None:
    """A push's fetch that lands in a batch with sends (and acks) is answered before their
    transaction and its fsync, and sees the queue as it was before them."""
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2):
            await store.create_account(_device(n), None, 1)
        a, b = _device(1).device_id, _device(2).device_id
        await store.deliver(a, "m-0", b"d0", [Delivery(b"0", (b,))], None, 1)
        conn, executor = store._conn, store._executor
        assert conn is not None and executor is not None
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        # Hold the storage thread so that the write and the read below form one batch.
        release = threading.Event()
        executor.submit(release.wait)
        write = asyncio.ensure_future(
            store.deliver(a, "m-1", b"d1", [Delivery(b"1", (b,))], None, 1)
        )
        read = asyncio.ensure_future(store.fetch(b, 0, 10))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(write, read)
        conn.set_trace_callback(None)

        assert [m.data for m in read.result()] == [b"0"]  # before the batch's write
        select = next(i for i, s in enumerate(statements) if s.startswith("SELECT q.seq"))
        assert select < statements.index("BEGIN IMMEDIATE") < statements.index("COMMIT")
        assert [m.data for m in await store.fetch(b, 0, 10)] == [b"0", b"1"]
    finally:
        await store.close()
