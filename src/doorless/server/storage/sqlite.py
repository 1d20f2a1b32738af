"""The embedded store: one SQLite database in the data directory.

Owns the SQLite connection, its transactions, its migrations and the operations whose SQL is
SQLite's own (queue release, ``executemany`` inserts, key-package claims, `deliver`);
everything else is `doorless.server.storage.sql.SqlStorage`.

One connection, used by one worker thread, so transactions are serialized (a second commit for
an epoch always sees the first). Each operation runs whole on that thread: its coroutine is
driven there to completion by `_drive` (the executor never waits, so it never suspends).
**Group commit**: the operations submitted while the thread was busy run as one batch: first
its reads (`_run_reads`), whose callers get their results at once, then its writes
(`_run_writes`) in one ``BEGIN IMMEDIATE`` transaction, each inside its own ``SAVEPOINT`` (a
refused operation rolls back alone, exactly as its own transaction would have), then one
``COMMIT`` (one fsync for them all). No writer gets its result before that COMMIT returned.
The reads go first because none of them waits for a write of its batch (each was submitted
before those writes were answered, so it may see the state before them), and a push's fetch
should not wait behind a batch of other sends and acks and its fsync (the delivery latency's
tail, issue #16). WAL journal with ``synchronous=FULL``: a transaction that returned is on
disk, so a message acknowledged to its sender survives a crash (I5). ``secure_delete``
overwrites deleted rows, so acknowledged ciphertext does not linger in free pages.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar, cast

from doorless.errors import ConfigurationError, StateError
from doorless.server.storage.base import (
    ClaimedKeyPackage,
    Delivery,
    DeliveryResult,
    EpochConflict,
    EpochGate,
    IdempotencyConflict,
    StorageDamaged,
    UnknownDevice,
    queued_per_device,
)
from doorless.server.storage.executor import Executor, Op, Row, Tx
from doorless.server.storage.schema import MIGRATIONS_TABLE, SCHEMA_VERSION, render
from doorless.server.storage.sql import SqlStorage
from doorless.server.storage.sql_hooks import suite_filter
from doorless.wire.messages import QueuedMessage

T = TypeVar("T")

# Versioned migrations, applied in order, each in its own transaction (`schema`).
MIGRATIONS = render("sqlite")

# Stay below SQLITE_MAX_VARIABLE_NUMBER on old builds when expanding IN (...).
_CHUNK = 500

# At most this many writes share one transaction (bounds the latency a batch adds).
_BATCH = 256
_WRITES = (Tx.STATEMENT, Tx.WRITE)

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=512)
def _qmark(sql: str) -> str:
    """``$n`` placeholders as SQLite's numbered ``?n``."""
    return _PLACEHOLDER.sub(r"?\1", sql)


def _chunks(items: Sequence[T], n: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so check-then-write sequences cannot interleave
    # with another process (the invite CLI) writing the same database.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Executor:
    """`Executor` over the connection, on the storage thread; its coroutines never suspend."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(_qmark(sql), args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        found = self._conn.execute(_qmark(sql), args).fetchall()
        return found[0] if found else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        return self._conn.execute(_qmark(sql), args).rowcount

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(_qmark(sql), args)


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here on the calling thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise StateError("a SQLite storage operation tried to wait")


def _call(conn: sqlite3.Connection, tx: Tx, op: Op[T], args: tuple[Any, ...]) -> T:
    """On the storage thread: one operation, in a transaction if it writes."""
    coro = cast(Coroutine[Any, Any, T], op(_Executor(conn), *args))
    if tx in (Tx.STATEMENT, Tx.WRITE):
        with _transaction(conn):
            return _drive(coro)
    return _drive(coro)  # reads: the single thread already orders them among the writes


@dataclass(slots=True)
class _Pending:
    """One submitted operation and, once its batch is done, its outcome."""

    tx: Tx
    op: Op[Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    value: Any = None
    failure: BaseException | None = None


@dataclass(slots=True)
class _Batcher:
    """The queue of operations waiting for the storage thread (see `SQLiteStorage._drain`)."""

    items: list[_Pending] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scheduled: bool = False


def _run_writes(conn: sqlite3.Connection, writes: list[_Pending]) -> None:
    """On the storage thread: ``writes`` in one transaction, a savepoint each, one COMMIT.
    Outcomes are stored on the items, delivered by the caller."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for p in writes:
            conn.execute("SAVEPOINT op")
            try:
                p.value = _drive(cast(Coroutine[Any, Any, Any], p.op(_Executor(conn), *p.args)))
            except BaseException as exc:  # noqa: BLE001 - delivered to its caller
                conn.execute("ROLLBACK TO op")
                p.failure = exc
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException as exc:  # noqa: BLE001 - the batch failed: every write gets it
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for p in writes:
            p.failure = p.failure or exc


def _run_reads(conn: sqlite3.Connection, reads: list[_Pending]) -> None:
    """On the storage thread: each read on its own (outside any transaction)."""
    for p in reads:
        try:
            p.value = _drive(cast(Coroutine[Any, Any, Any], p.op(_Executor(conn), *p.args)))
        except BaseException as exc:  # noqa: BLE001 - delivered to its caller
            p.failure = exc


def _settle(batch: list[_Pending]) -> None:
    """On the event loop: hand each caller its outcome."""
    for p in batch:
        if p.future.done():  # the caller was cancelled; what committed stays committed
            continue
        if p.failure is not None:
            p.future.set_exception(p.failure)
        else:
            p.future.set_result(p.value)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _migrate(conn: sqlite3.Connection) -> str:
    with _transaction(conn):
        conn.execute(MIGRATIONS_TABLE)
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {current} is newer than this server ({SCHEMA_VERSION})"
        )
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        with _transaction(conn):
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                (version, description),
            )
    return _call(conn, Tx.WRITE, SqlStorage._mint_server_id, ())


def _integrity(conn: sqlite3.Connection, full: bool) -> list[str]:
    pragma = "integrity_check" if full else "quick_check"
    found = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}(20)").fetchall()]
    problems = [] if found == ["ok"] else found
    if full:
        problems += [
            f"foreign key: a row of {row[0]} refers to a missing row of {row[2]}"
            for row in conn.execute("PRAGMA foreign_key_check").fetchall()[:20]
        ]
    return problems


def _damaged(path: Path, check: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    return (
        f"the database {path} is damaged ({check}: {shown}); the server will not use it. "
        "Restore it from a backup (docs/deploy.md); 'doorless server check' runs the full check"
    )


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


class SQLiteStorage(SqlStorage):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._server_id = ""
        self._batcher = _Batcher()

    # --- plumbing --------------------------------------------------------------------------

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None or self._conn is None:
            raise StateError("storage is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, self._conn, *args))

    async def _run(self, tx: Tx, op: Op[T], *args: Any) -> T:
        if self._executor is None or self._conn is None:
            raise StateError("storage is not open")
        loop = asyncio.get_running_loop()
        pending = _Pending(tx, op, args, loop.create_future())
        batcher = self._batcher
        with batcher.lock:
            batcher.items.append(pending)
            start = not batcher.scheduled
            batcher.scheduled = True
        if start:
            self._executor.submit(self._drain, self._conn, loop)
        return cast(T, await pending.future)

    def _drain(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """On the storage thread: run batches until the queue is empty."""
        batcher = self._batcher
        while True:
            with batcher.lock:
                batch, rest = batcher.items[:_BATCH], batcher.items[_BATCH:]
                batcher.items = rest
                if not batch:
                    batcher.scheduled = False
                    return
            reads = [p for p in batch if p.tx not in _WRITES]
            writes = [p for p in batch if p.tx in _WRITES]
            if reads:  # first, and answered at once (see the module docstring)
                _run_reads(conn, reads)
                loop.call_soon_threadsafe(_settle, reads)
            if writes:
                _run_writes(conn, writes)
                loop.call_soon_threadsafe(_settle, writes)

    async def open(self) -> None:
        if self._conn is not None:
            raise StateError("storage is already open")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorless-sqlite")
        loop = asyncio.get_running_loop()
        try:
            try:
                self._conn = await loop.run_in_executor(self._executor, _connect, self._path)
                problems = await self._on_thread(_integrity, False)
            except sqlite3.DatabaseError as exc:  # not a database at all, or unreadable
                problems = [str(exc)]
            if problems:
                raise StorageDamaged(_damaged(self._path, "quick_check", problems))
            self._server_id = await self._on_thread(_migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, executor = self._conn, self._executor
        self._conn = None
        self._executor = None
        if executor is not None:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)

    async def check(self, full: bool = True) -> list[str]:
        """``PRAGMA integrity_check`` and ``foreign_key_check`` (``quick_check`` only, when
        not ``full``): SQLite's own list of problems (pages, indexes, constraints: names and
        numbers, no row content)."""
        try:
            return await self._on_thread(_integrity, full)
        except sqlite3.DatabaseError as exc:
            return [str(exc)]

    async def server_id(self) -> str:
        if not self._server_id:
            raise StateError("storage is not open")
        return self._server_id

    async def delete_reports(self, report_ids: Sequence[int]) -> int:
        deleted = await super().delete_reports(report_ids)
        # secure_delete zeroed the rows; the WAL still holds older images of their pages (with
        # the reported plaintext) until a checkpoint: truncate it (best effort under readers).
        await self._on_thread(_checkpoint)
        return deleted

    # --- the SQL of SQLite's own -------------------------------------------------------------

    def _any_of(
        self, column: str, param: int, values: Sequence[Any], sqltype: str
    ) -> list[tuple[str, tuple[Any, ...]]]:
        return [
            (
                f"{column} IN ({', '.join(f'${param + i}' for i in range(len(chunk)))})",
                tuple(chunk),
            )
            for chunk in _chunks(values)
        ]

    async def _drop_queue_entries(
        self, ex: Executor, device_id: str, seqs: Sequence[int] | None
    ) -> int:
        # A statement per chunk of seqs, not per seq: an ack frame is one DELETE, and each
        # payload's count of remaining recipients drops once per statement.
        released: list[int] = []
        if seqs is None:
            found = await ex.fetch(
                "DELETE FROM queue WHERE device_id = $1 RETURNING payload_id", device_id
            )
            released = [r[0] for r in found]
        for condition, args in self._any_of("seq", 2, seqs or (), "bigint"):
            found = await ex.fetch(
                f"DELETE FROM queue WHERE device_id = $1 AND {condition} RETURNING payload_id",
                device_id,
                *args,
            )
            released += [r[0] for r in found]
        by_count: dict[int, list[int]] = {}
        for payload_id, count in Counter(released).items():
            by_count.setdefault(count, []).append(payload_id)
        for count, ids in by_count.items():
            for condition, args in self._any_of("id", 2, ids, "bigint"):
                await ex.execute(
                    f"UPDATE payloads SET remaining = remaining - $1 WHERE {condition}",
                    count,
                    *args,
                )
            for condition, args in self._any_of("id", 1, ids, "bigint"):
                await ex.execute(
                    f"DELETE FROM payloads WHERE remaining <= 0 AND {condition}", *args
                )
        return len(released)

    async def _lock_key_packages(self, ex: Executor, device_id: str) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's one write lock

    async def _insert_key_packages(
        self, ex: Executor, device_id: str, key_packages: Sequence[bytes], cipher_suite: int
    ) -> None:
        await ex.executemany(
            "INSERT INTO key_packages (device_id, data, last_resort, cipher_suite) "
            "VALUES ($1, $2, 0, $3)",
            [(device_id, kp, cipher_suite) for kp in key_packages],
        )

    async def _claim_key_package(
        self, ex: Executor, device_id: str, cipher_suite: int | None
    ) -> ClaimedKeyPackage | None:
        where, args = suite_filter(cipher_suite, 2)
        row = await ex.fetchrow(
            f"SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 {where} "
            "ORDER BY last_resort, id LIMIT 1",
            device_id,
            *args,
        )
        if row is None:
            return None
        if not row[2]:  # one-time packages are consumed; the last-resort one stays
            await ex.execute("DELETE FROM key_packages WHERE id = $1", row[0])
        return ClaimedKeyPackage(device_id, bytes(row[1]), bool(row[2]))

    @staticmethod
    async def _check_gate(ex: Executor, gate: EpochGate) -> int:
        """Apply the one-commit-per-epoch rule; returns the group's epoch after this message."""
        current = await ex.fetchval(
            "SELECT epoch FROM group_epochs WHERE group_id = $1", gate.group_id
        )
        after = gate.epoch + 1 if gate.is_commit else gate.epoch
        if current is None:
            # First message the server sees for this group: it fixes the starting epoch.
            await ex.execute(
                "INSERT INTO group_epochs (group_id, epoch) VALUES ($1, $2)", gate.group_id, after
            )
            return after
        if gate.epoch != current:
            what = "commit" if gate.is_commit else "message"
            raise EpochConflict(
                int(current), f"{what} is for epoch {gate.epoch}, the group is at epoch {current}"
            )
        if gate.is_commit:
            await ex.execute(
                "UPDATE group_epochs SET epoch = $1 WHERE group_id = $2", after, gate.group_id
            )
        return after

    async def _deliver(
        self,
        ex: Executor,
        sender: str,
        message_id: str,
        digest: bytes,
        parts: tuple[Delivery, ...],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        """One writer: check the idempotency record, the gate and the recipients, then queue
        each part for each recipient (the devices' ``next_seq`` gives the seqs)."""
        row = await ex.fetchrow(
            "SELECT digest, group_epoch FROM sent WHERE sender_device_id = $1 AND message_id = $2",
            sender,
            message_id,
        )
        if row is not None:
            if bytes(row[0]) != digest:
                raise IdempotencyConflict("message id already used for different content")
            return DeliveryResult(message_id, row[1], duplicate=True)
        group_epoch = await self._check_gate(ex, gate) if gate is not None else None
        if gate is not None:
            await self._apply_group_update(ex, gate)
        wanted = sorted({r for p in parts for r in p.recipients})
        live: set[str] = set()
        for condition, args in self._any_of("device_id", 1, wanted, "text"):
            live.update(
                r[0]
                for r in await ex.fetch(
                    f"SELECT device_id FROM devices WHERE revoked_at IS NULL AND {condition}",
                    *args,
                )
            )
        missing = [d for d in wanted if d not in live]
        if missing:
            raise UnknownDevice(missing)
        queued: list[tuple[str, QueuedMessage]] = []
        for part in parts:
            recipients = tuple(dict.fromkeys(part.recipients))
            if not recipients:  # e.g. a commit in a one-member group: only the epoch moves
                continue
            frank = None
            if part.stamp is not None:
                assert gate is not None  # only application messages are stamped
                group_seq = await ex.fetchval(
                    "UPDATE group_epochs SET next_seq = next_seq + 1 WHERE group_id = $1 "
                    "RETURNING next_seq - 1",
                    gate.group_id,
                )
                frank = part.stamp(int(group_seq))
            payload_id = await ex.fetchval(
                "INSERT INTO payloads (data, remaining, frank) VALUES ($1, $2, $3) RETURNING id",
                part.data,
                len(recipients),
                frank,
            )
            for device_id in recipients:
                seq = await ex.fetchval(
                    "UPDATE devices SET next_seq = next_seq + 1 WHERE device_id = $1 "
                    "RETURNING next_seq - 1",
                    device_id,
                )
                await ex.execute(
                    "INSERT INTO queue (device_id, seq, payload_id, received_at) "
                    "VALUES ($1, $2, $3, $4)",
                    device_id,
                    seq,
                    payload_id,
                    now,
                )
                queued.append((device_id, QueuedMessage(int(seq), part.data, now, frank)))
        await ex.execute(
            "INSERT INTO sent (sender_device_id, message_id, digest, group_epoch, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            sender,
            message_id,
            digest,
            group_epoch,
            now,
        )
        return DeliveryResult(
            message_id, group_epoch, duplicate=False, queued=queued_per_device(queued)
        )
