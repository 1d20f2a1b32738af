"""The embedded store: one SQLite database in the data directory.

Owns the SQLite connections, their transactions, the migrations and the operations whose SQL
is SQLite's own (payload release, acks, ``executemany`` inserts, key-package claims,
`deliver`); everything else is `doorless.server.storage.sql.SqlStorage`.

Each operation runs whole, without suspending (its coroutine is driven to completion by
`_drive`: the executor never waits), **on the event loop's thread**, except the one step that
waits for the disk:

* **Reads** run at once on a connection of their own (`_read`; a ``SNAPSHOT`` inside a read
  transaction). With the WAL journal a reader sees every transaction committed before it
  started and never waits for the writer, so a read submitted after a write was answered sees
  it, and a push's or a send's read never waits behind other sends and acks and their fsync.
* **Writes** are group-committed by one writer task (`_write_batches`): the writes submitted
  while the previous batch committed run as one batch in one ``BEGIN IMMEDIATE`` transaction,
  each inside its own ``SAVEPOINT`` (a refused operation rolls back alone, exactly as its own
  transaction would have), then one ``COMMIT``, run on the storage thread (the fsync, one for
  the whole batch; the loop serves other requests meanwhile). No writer gets its result before
  that COMMIT returned. Transactions stay serialized: a second commit for an epoch always sees
  the first.

Why not everything on the storage thread, as before: each statement releases the GIL around
SQLite's work and must take it back from the busy event loop (up to ``sys.getswitchinterval()``
each time), so that thread spent most of its time waiting for the GIL and a send's p99 most of
its time waiting for that thread (issue #16, ``docs/benchmarks.md``). What still runs there:
each COMMIT, the ``BEGIN IMMEDIATE`` of a batch that must wait for another process's write lock
(the invite command), opening, migrations, integrity checks and checkpoints (`_on_thread`, one
at a time with the writer's batches).

**Checkpoints** (copying the WAL's pages into the database file, then an fsync of it) run in
the background on a connection and thread of their own (`_checkpoint_cycle`), not inside a
writer's COMMIT as SQLite does by default every 1,000 pages: there the next batch's writes
waited for it, 10-50 ms each time and up to 380 ms when the disk was slow (issue #16). A pass
runs beside the writes (a ``PASSIVE`` checkpoint takes no lock a writer needs); a last short
one between two batches backfills the frames the writes added meanwhile, so that the next
write starts the WAL again from its beginning (SQLite restarts a WAL only once every frame in
it is in the database file) and it does not grow without end.

WAL journal with ``synchronous=FULL``: a transaction that returned is on disk, so a message
acknowledged to its sender survives a crash (I5). ``secure_delete`` overwrites deleted rows, so
acknowledged ciphertext does not linger in free pages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar, cast

from doorless.errors import ConfigurationError, StateError
from doorless.server.log import describe_exception, log_event
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
from doorless.server.storage.sql_hooks import Ack, count_per_ack, suite_filter
from doorless.wire.messages import QueuedMessage

T = TypeVar("T")

# Versioned migrations, applied in order, each in its own transaction (`schema`).
MIGRATIONS = render("sqlite")

# At most this many writes share one transaction: a batch's statements run on the event
# loop's thread, so this bounds how long they hold it (and the latency a batch adds).
_BATCH = 64
_WRITES = (Tx.STATEMENT, Tx.WRITE)

# How long a connection waits for another process's lock before SQLITE_BUSY.
_BUSY_MS = 5000

# A checkpoint cycle starts when a batch commits at least this long after the last one
# started (at 300 sends/s about 1,500 WAL frames; SQLite's own default is every 1,000).
_CHECKPOINT_PERIOD = 0.5
# A cycle's background passes, at most: each backfills what the writes added during the one
# before; they stop once that was fewer than `_CATCH_UP` frames, which the last, short step
# between two batches then backfills.
_PASSES = 4
_CATCH_UP = 256

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=512)
def _qmark(sql: str) -> str:
    """``$n`` placeholders as SQLite's numbered ``?n``."""
    return _PLACEHOLDER.sub(r"?\1", sql)


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
    """One operation on its own, in a transaction if it writes (opening the store)."""
    coro = cast(Coroutine[Any, Any, T], op(_Executor(conn), *args))
    if tx in _WRITES:
        with _transaction(conn):
            return _drive(coro)
    return _drive(coro)


def _read(conn: sqlite3.Connection, tx: Tx, op: Op[T], args: tuple[Any, ...]) -> T:
    """A read on the reader connection; a ``SNAPSHOT``'s statements in one read transaction
    (a COMMIT on the storage thread could otherwise land between them)."""
    coro = cast(Coroutine[Any, Any, T], op(_Executor(conn), *args))
    if tx is not Tx.SNAPSHOT:
        return _drive(coro)
    conn.execute("BEGIN")
    try:
        return _drive(coro)
    finally:
        conn.execute("COMMIT")


@dataclass(slots=True)
class _Pending:
    """One submitted write and, once its batch is done, its outcome."""

    op: Op[Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    value: Any = None
    failure: BaseException | None = None


def _run_writes(conn: sqlite3.Connection, writes: list[_Pending]) -> None:
    """Inside the batch's transaction: each write in its own savepoint. Outcomes are stored on
    the items, delivered once the batch committed."""
    for p in writes:
        conn.execute("SAVEPOINT op")
        try:
            p.value = _drive(cast(Coroutine[Any, Any, Any], p.op(_Executor(conn), *p.args)))
        except BaseException as exc:  # noqa: BLE001 - delivered to its caller
            conn.execute("ROLLBACK TO op")
            p.failure = exc
        conn.execute("RELEASE op")


def _waiting(fn: Callable[..., T], conn: sqlite3.Connection, *args: Any) -> T:
    """On the storage thread: ``fn(conn, *args)``, the writer waiting up to `_BUSY_MS` for
    another process's lock (it does not wait on the event loop's thread)."""
    conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _settle(batch: list[_Pending]) -> None:
    """Hand each caller its outcome."""
    for p in batch:
        if p.future.done():  # the caller was cancelled; what committed stays committed
            continue
        if p.failure is not None:
            p.future.set_exception(p.failure)
        else:
            p.future.set_result(p.value)


def _connect(path: Path, busy_ms: int) -> sqlite3.Connection:
    """A connection; ``busy_ms``: how long it waits for another process's lock (the writer's
    is 0: it runs on the event loop's thread, and waits only inside `_waiting`)."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    # A batch's writes each run in a savepoint, whose journal of the pages it changes went to
    # a temporary file beyond 64 KiB: a file write per page, on the event loop's thread (the
    # statements of a send took 2.5 times as long; issue #16). Kept in memory instead.
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
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


def _passive_checkpoint(conn: sqlite3.Connection) -> int:
    """Backfill what no reader still needs, waiting for no one; the WAL's length in frames
    (-1 if another connection was checkpointing)."""
    _busy, frames, _backfilled = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


class SQLiteStorage(SqlStorage):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._conn: sqlite3.Connection | None = None  # the writer
        self._reader: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None  # the storage thread
        self._server_id = ""
        self._writes: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        # The checkpointer: its connection, thread and running cycle (module docstring).
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_thread: ThreadPoolExecutor | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._cycle_started = -_CHECKPOINT_PERIOD
        # Held by a batch from its BEGIN to its COMMIT and by `_on_thread`: the writer
        # connection is used by one of them at a time.
        self._writing = asyncio.Lock()

    # --- plumbing --------------------------------------------------------------------------

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(writer connection, *args)`` on the storage thread, between write batches."""
        if self._executor is None or self._conn is None:
            raise StateError("storage is not open")
        async with self._writing:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, partial(_waiting, fn, self._conn, *args)
            )

    async def _run(self, tx: Tx, op: Op[T], *args: Any) -> T:
        if self._conn is None or self._reader is None:
            raise StateError("storage is not open")
        if tx not in _WRITES:
            return _read(self._reader, tx, op, args)
        pending = _Pending(op, args, asyncio.get_running_loop().create_future())
        self._writes.append(pending)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches())
        return cast(T, await pending.future)

    async def _write_batches(self) -> None:
        """The writer task: batches until no write is waiting (see the module docstring)."""
        try:
            while self._writes:
                batch = self._writes[:_BATCH]
                del self._writes[:_BATCH]
                try:
                    async with self._writing:
                        await self._write_batch(batch)
                finally:  # every caller gets an outcome, even if the connection broke
                    _settle(batch)
                self._start_checkpoint()
        finally:
            self._writer = None

    def _start_checkpoint(self) -> None:
        now = time.monotonic()
        if self._checkpointing is None and now - self._cycle_started >= _CHECKPOINT_PERIOD:
            self._cycle_started = now
            self._checkpointing = asyncio.create_task(self._checkpoint_cycle())

    async def _checkpoint_cycle(self) -> None:
        """Background passes on the checkpointer's thread while the writes go on, then the
        short last step on the storage thread between two batches."""
        loop = asyncio.get_running_loop()
        checkpointer = self._checkpointer
        try:
            if checkpointer is None:
                raise StateError("storage is not open")
            frames = 0
            for _ in range(_PASSES):
                before = frames
                frames = await loop.run_in_executor(
                    self._checkpoint_thread, _passive_checkpoint, checkpointer
                )
                if frames - before < _CATCH_UP:
                    break
            await self._on_thread(_passive_checkpoint)
        except Exception as exc:  # noqa: BLE001 - the WAL waits for the next cycle; say why
            log_event("checkpoint failed", logging.WARNING, **describe_exception(exc))
        finally:
            self._checkpointing = None

    async def _write_batch(self, writes: list[_Pending]) -> None:
        """One transaction for ``writes``: its statements here, its COMMIT on the thread."""
        conn, executor = self._conn, self._executor
        assert conn is not None and executor is not None
        loop = asyncio.get_running_loop()
        try:
            try:
                _begin(conn)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                # Another process holds the write lock: wait for it there, not here.
                await loop.run_in_executor(executor, _waiting, _begin, conn)
            _run_writes(conn, writes)
            await loop.run_in_executor(executor, _commit, conn)
        except BaseException as exc:  # noqa: BLE001 - the batch failed: every write gets it
            for p in writes:
                p.failure = p.failure or exc
            await loop.run_in_executor(executor, _rollback, conn)

    async def open(self) -> None:
        if self._conn is not None:
            raise StateError("storage is already open")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorless-sqlite")
        loop = asyncio.get_running_loop()
        try:
            try:
                conn = await loop.run_in_executor(self._executor, _connect, self._path, 0)
                conn.execute("PRAGMA wal_autocheckpoint=0")  # ours run in the background
                self._conn = conn
                problems = await self._on_thread(_integrity, False)
            except sqlite3.DatabaseError as exc:  # not a database at all, or unreadable
                problems = [str(exc)]
            if problems:
                raise StorageDamaged(_damaged(self._path, "quick_check", problems))
            self._server_id = await self._on_thread(_migrate)
            reader = self._reader = _connect(self._path, busy_ms=_BUSY_MS)
            reader.execute("PRAGMA query_only=ON")
            self._checkpointer = _connect(self._path, busy_ms=0)
            self._checkpoint_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="doorless-sqlite-checkpoint"
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._writer is not None:  # the writes already submitted are committed first
            await asyncio.shield(self._writer)
        if self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)
        reader, conn, executor = self._reader, self._conn, self._executor
        checkpointer, checkpoint_thread = self._checkpointer, self._checkpoint_thread
        self._reader = self._conn = self._checkpointer = None
        self._executor = self._checkpoint_thread = None
        if reader is not None:
            reader.close()
        if checkpoint_thread is not None:
            if checkpointer is not None:
                await asyncio.get_running_loop().run_in_executor(
                    checkpoint_thread, checkpointer.close
                )
            checkpoint_thread.shutdown(wait=True)
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
        """One condition over a JSON array, PostgreSQL's ``ANY($n)``: the statement's text is
        the same whatever the number of values, so SQLite prepares it once (a list of
        placeholders was a new statement for each length) and no chunking is needed."""
        if sqltype not in ("text", "bigint"):
            raise StateError(f"no JSON form for {sqltype} values")
        if not values:
            return []
        return [(f"{column} IN (SELECT value FROM json_each(${param}))", (json.dumps(values),))]

    async def _ack_batch(self, acks: list[Ack]) -> list[int]:
        """One write of the next group commit for all the batch's acks: one DELETE over their
        ``(device, seq)`` pairs (a JSON array: one statement text whatever their number, so
        SQLite prepares it once), then each payload's count of recipients once."""

        async def op(ex: Executor) -> list[int]:
            found = await ex.fetch(
                "DELETE FROM queue WHERE rowid IN (SELECT q.rowid FROM json_each($1) AS a "
                "JOIN queue AS q ON q.device_id = a.value ->> 0 AND q.seq = a.value ->> 1) "
                "RETURNING device_id, seq, payload_id",
                json.dumps([[device_id, seq] for device_id, seqs in acks for seq in seqs]),
            )
            await self._release_payloads(ex, [r[2] for r in found])
            return count_per_ack(acks, ((r[0], r[1]) for r in found))

        return await self._run(Tx.WRITE, op)

    async def _release_payloads(self, ex: Executor, payload_ids: list[int]) -> None:
        # A statement per distinct count (and chunk of ids), not one per payload.
        by_count: dict[int, list[int]] = {}
        for payload_id, count in Counter(payload_ids).items():
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

    async def _missing_devices(self, ex: Executor, parts: tuple[Delivery, ...]) -> list[str]:
        """The recipients of all the parts that are no device or a revoked one (the refusal
        names them all, not only those of the part that found one)."""
        wanted = sorted({r for p in parts for r in p.recipients})
        live: set[str] = set()
        for condition, args in self._any_of("device_id", 1, wanted, "text"):
            found = await ex.fetch(
                f"SELECT device_id FROM devices WHERE revoked_at IS NULL AND {condition}", *args
            )
            live.update(r[0] for r in found)
        return [d for d in wanted if d not in live]

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
        queued: list[tuple[str, QueuedMessage]] = []
        for part in parts:
            recipients = tuple(dict.fromkeys(part.recipients))
            if not recipients:  # e.g. a commit in a one-member group: only the epoch moves
                continue
            # One statement for all the recipients' seqs and one for their queue rows, not two
            # per recipient: each statement is a round trip through the sqlite3 module on the
            # event loop's thread, the server's busiest (issue #16). The first also checks
            # that each recipient is a device that is not revoked (no seq: refused, and the
            # savepoint undoes what this send wrote).
            taken = await ex.fetch(
                "UPDATE devices SET next_seq = next_seq + 1 WHERE revoked_at IS NULL "
                "AND device_id IN (SELECT value FROM json_each($1)) "
                "RETURNING device_id, next_seq - 1",
                json.dumps(recipients),
            )
            seqs = {device_id: int(seq) for device_id, seq in taken}
            if len(seqs) != len(recipients):
                raise UnknownDevice(await self._missing_devices(ex, parts))
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
            await ex.execute(
                "INSERT INTO queue (device_id, seq, payload_id, received_at) "
                "SELECT value ->> 0, value ->> 1, $2, $3 FROM json_each($1)",
                json.dumps([[device_id, seqs[device_id]] for device_id in recipients]),
                payload_id,
                now,
            )
            queued += [(d, QueuedMessage(seqs[d], part.data, now, frank)) for d in recipients]
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
