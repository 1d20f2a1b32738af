"""The SQLite store: versioned migrations, durability settings, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from doorless.errors import ConfigurationError, StateError
from doorless.server.storage.base import (
    Delivery,
    EpochConflict,
    EpochGate,
    StorageDamaged,
    UnknownDevice,
)
from doorless.server.storage.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStorage
from support.sqlite_damage import damage, filled_database

from .helpers import FakeClock, device_record, make_config, running

pytestmark = pytest.mark.asyncio


async def test_migrations_are_recorded_and_idempotent(data_dir: Path) -> None:
    path = data_dir / "db.sqlite3"
    store = SQLiteStorage(path)
    await store.open()
    server_id = await store.server_id()
    await store.close()
    store = SQLiteStorage(path)
    await store.open()
    assert await store.server_id() == server_id  # minted once
    await store.close()
    conn = sqlite3.connect(path)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [v for v, _, _ in MIGRATIONS] and versions[-1] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_a_newer_schema_is_refused(data_dir: Path) -> None:
    path = data_dir / "db.sqlite3"
    store = SQLiteStorage(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future')", (SCHEMA_VERSION + 1,)
    )
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError):
        await SQLiteStorage(path).open()


async def test_durability_pragmas(data_dir: Path) -> None:
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # savepoints in memory
    finally:
        await store.close()


async def test_use_before_open_is_a_state_error(data_dir: Path) -> None:
    with pytest.raises(StateError):
        await SQLiteStorage(data_dir / "db.sqlite3").get_device("x")


async def test_a_refused_delivery_rolls_back_everything(data_dir: Path) -> None:
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        await store.create_account(device_record(1), None, 1)
        gate = EpochGate(b"g", 0, is_commit=True)
        # Unknown recipient in the second part: the epoch must not move, nothing is queued.
        with pytest.raises(UnknownDevice):
            await store.deliver(
                device_record(1).device_id,
                "m-1",
                b"d1",
                [Delivery(b"a", (device_record(1).device_id,)), Delivery(b"b", ("f" * 32,))],
                gate,
                1,
            )
        assert await store.group_epoch(b"g") is None
        assert await store.fetch(device_record(1).device_id, 0, 10) == []
        # The same message id is still free.
        result = await store.deliver(
            device_record(1).device_id,
            "m-1",
            b"d1",
            [Delivery(b"a", (device_record(1).device_id,))],
            gate,
            1,
        )
        assert result.group_epoch == 1 and not result.duplicate
        with pytest.raises(EpochConflict) as e:
            await store.deliver(device_record(1).device_id, "m-2", b"d2", [], gate, 1)
        assert e.value.current_epoch == 1
    finally:
        await store.close()


async def test_a_payload_is_stored_once_and_freed_by_the_last_ack(data_dir: Path) -> None:
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        ids = []
        for n in (1, 2, 3):
            await store.create_account(device_record(n), None, 1)
            ids.append(device_record(n).device_id)
        await store.deliver(ids[0], "m-1", b"d", [Delivery(b"payload", tuple(ids))], None, 1)
        conn = store._conn
        assert conn is not None
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 1
        for i, device_id in enumerate(ids):
            (m,) = await store.fetch(device_id, 0, 10)
            assert m.data == b"payload"
            assert await store.ack(device_id, [m.seq]) == 1
            remaining = conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0]
            assert remaining == (1 if i < 2 else 0)
    finally:
        await store.close()


async def test_freeing_a_payload_does_not_scan_the_queue(data_dir: Path) -> None:
    """The last ack of a payload deletes it, and SQLite checks that no queue entry still
    refers to it: the work (counted in SQLite's VM steps) must not grow with the entries
    waiting for other devices (an offline device's backlog), as a scan of the queue would."""
    store = SQLiteStorage(data_dir / "db.sqlite3")
    await store.open()
    try:
        for n in (1, 2, 3):
            await store.create_account(device_record(n), None, 1)
        a, b, offline = (device_record(n).device_id for n in (1, 2, 3))
        conn = store._conn
        assert conn is not None

        async def steps_to_free_one(backlog: int) -> int:
            # The offline device's backlog, written directly (thousands of sends take long).
            conn.execute("BEGIN IMMEDIATE")
            first = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM queue").fetchone()[0] + 1
            for seq in range(first, first + backlog):
                (payload_id,) = conn.execute(
                    "INSERT INTO payloads (data, remaining) VALUES (x'00', 1) RETURNING id"
                ).fetchone()
                conn.execute(
                    "INSERT INTO queue (device_id, seq, payload_id, received_at) "
                    "VALUES (?, ?, ?, 1)",
                    (offline, seq, payload_id),
                )
            conn.execute("COMMIT")
            await store.deliver(a, f"m-{backlog}", b"d", [Delivery(b"x", (b,))], None, 1)
            (m,) = await store.fetch(b, 0, 10)
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0  # go on

            conn.set_progress_handler(count, 100)
            try:
                assert await store.ack(b, [m.seq]) == 1
            finally:
                conn.set_progress_handler(None, 0)
            return steps[0]

        small = await steps_to_free_one(100)
        large = await steps_to_free_one(20_000)  # 20,100 entries waiting
        assert large < 2 * small + 20
    finally:
        await store.close()


# --- a damaged SQLite database -----------------------------------------------------------------


async def test_a_damaged_sqlite_database_is_refused_at_start(data_dir: Path) -> None:
    path = data_dir / "doorless.sqlite3"
    await filled_database(path)
    storage = SQLiteStorage(path)
    await storage.open()
    assert await storage.check() == []
    await storage.close()
    damage(path)
    with pytest.raises(StorageDamaged, match=r"is damaged \(quick_check: .*doorless server check"):
        await SQLiteStorage(path).open()


async def test_a_file_that_is_no_database_is_refused_at_start(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    path = data_dir / "doorless.sqlite3"
    path.write_bytes(b"this is not a database" * 500)
    with pytest.raises(StorageDamaged, match="is damaged"):
        await SQLiteStorage(path).open()


async def test_the_server_does_not_start_on_a_damaged_database(data_dir: Path) -> None:
    config = make_config(data_dir)
    await filled_database(config.database_path)
    damage(config.database_path)
    with pytest.raises(StorageDamaged):
        async with running(config, FakeClock()):
            pass
