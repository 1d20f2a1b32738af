"""The scale-out store: PostgreSQL through asyncpg, shared by any number of server processes.

Owns the connection pool, transactions and retries, the migrations' locking, and the operations
whose SQL is PostgreSQL's own (row locks, ``unnest`` bulk writes, ``SKIP LOCKED`` claims,
`deliver`); everything else is `doorless.server.storage.sql.SqlStorage`, with the same tables
as SQLite (`doorless.server.storage.schema`, only the column types differ). What changes is
concurrency: SQLite serializes every transaction on one connection, while here several
processes run transactions at the same time, so each operation the delivery guarantees depend
on says how it stays correct.

Isolation: every method is one transaction at READ COMMITTED (PostgreSQL's default), made safe
by explicit row locks and single-statement conditional writes, never by re-reading and hoping:

* READ COMMITTED re-checks the WHERE clause of an UPDATE/DELETE (and a row lock) against the
  newest committed version of a row after waiting for its lock ("EvalPlanQual"), so a
  conditional update such as ``UPDATE group_epochs ... WHERE epoch = $e`` succeeds for exactly
  one of two racing transactions. SERIALIZABLE would also be correct but would turn every such
  race into a serialization failure to retry, and it would abort unrelated sends that merely
  read overlapping rows; the locks below give the same outcome with no retries.
* Locks on several rows of one table are always taken in key order (``ORDER BY ... FOR ...``),
  and tables are always locked in the same order (sent -> group_epochs -> devices -> payloads),
  so two transactions cannot deadlock. Should PostgreSQL still report a deadlock or a
  serialization failure, the whole transaction is retried (`_RETRYABLE`); every method is a
  pure function of its arguments and the database, so a retry is safe.

Operations of one statement (`Tx.READ`, `Tx.STATEMENT`) run without an explicit transaction.
A send is two of them (`doorless.server.storage.pg_send`): one read (`send_context`) and one
call of the ``doorless_deliver`` function, which runs the statements of `_deliver` as one
implicit transaction; `_deliver` itself remains for commits that write a validated group
update, and as the fallback of a send that keeps losing its franking numbers to others.
Queue reads and acks that arrive together (the sockets one send wakes; acks from many sockets)
are coalesced (`doorless.server.storage.coalesce`): one query, or one transaction, per batch.

The key-transparency log's appends are serialized across processes by a session-level advisory
lock (`kt_lock`) held by the publishing process from its catch-up to its append. A database
that cannot be reached (refused or dropped connection, shutdown, too many connections, no
pooled connection within `_ACQUIRE_TIMEOUT`) raises `StorageUnavailable` (a 503 + Retry-After);
the pool reconnects by itself once PostgreSQL is back.

Durability: ``synchronous_commit`` stays on (the server default): a transaction that returned
is in the write-ahead log on disk, so a message acknowledged to its sender survives a crash of
any server process or of PostgreSQL itself (I5).

Deleted rows (acknowledged ciphertext) stay in dead tuples until VACUUM reclaims the space;
they are ciphertext only (I1), and autovacuum reclaims them. Schedule a regular VACUUM if a
deployment wants them gone sooner (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from doorless.errors import ConfigurationError, StateError
from doorless.server.storage import pg_send, rows
from doorless.server.storage.base import (
    ClaimedKeyPackage,
    Delivery,
    DeliveryResult,
    EpochConflict,
    EpochGate,
    IdempotencyConflict,
    SendContext,
    StorageUnavailable,
    UnknownDevice,
    queued_per_device,
)
from doorless.server.storage.coalesce import Coalescer
from doorless.server.storage.executor import Executor, Op, Row, Tx
from doorless.server.storage.schema import MIGRATIONS_TABLE, SCHEMA_VERSION, render
from doorless.server.storage.sql import SqlStorage
from doorless.server.storage.sql_hooks import Ack, count_per_ack, suite_filter
from doorless.wire.messages import QueuedMessage

T = TypeVar("T")

# Versioned migrations, the same versions as `doorless.server.storage.sqlite.MIGRATIONS`
# (both rendered from `doorless.server.storage.schema`).
MIGRATIONS = render("postgres")

# Lock contention the database resolves by aborting one transaction: retry it whole.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 5

# The database cannot be reached now: refused or dropped connections, PostgreSQL shutting down,
# starting or out of connections, a pool that found no connection in time. Requests get 503
# with Retry-After (`StorageUnavailable`); the pool reconnects on its own once it is back.
_UNAVAILABLE = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, ...
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.ConnectionDoesNotExistError,  # closed in the middle of an operation
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
)

# pg_advisory_lock key of the KT log's append lock (with the schema name, as the migrations').
_KT_LOCK = "SELECT pg_advisory_lock(hashtext('doorless-kt:' || current_schema()))"
_KT_UNLOCK = "SELECT pg_advisory_unlock(hashtext('doorless-kt:' || current_schema()))"

_ACQUIRE_TIMEOUT = 30.0  # seconds a request waits for a pooled connection

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _Executor:
    """`Executor` over one pooled asyncpg connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        status = str(await self._conn.execute(sql, *args))  # e.g. "DELETE 3", "INSERT 0 1"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, args)

    def savepoint(self) -> Any:
        """``async with``: a nested transaction (inside `_run`'s one)."""
        return self._conn.transaction()


async def _reset_if_needed(conn: Any) -> None:
    """What the pool runs on a connection given back. asyncpg's default is a reset query (a
    round trip on every release); our operations leave no session state behind (``SET LOCAL``
    and transaction-scoped advisory locks only; the KT lock has its own connection), so only a
    connection left inside a transaction (an operation cancelled half-way) needs it."""
    if conn.is_in_transaction():
        await conn.reset()


async def _migrate(ex: _Executor) -> str:
    # Several server processes may start at once against a new database: a transaction-scoped
    # advisory lock (per schema) lets one of them migrate while the others wait, then find
    # nothing left to do. DDL is transactional in PostgreSQL, so a failed migration leaves
    # nothing behind.
    await ex.execute("SELECT pg_advisory_xact_lock(hashtext('doorless:' || current_schema()))")
    await ex.execute(MIGRATIONS_TABLE)
    current = await ex.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {current} is newer than this server ({SCHEMA_VERSION})"
        )
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        async with ex.savepoint():  # one per version, as SQLite's transaction per version
            for statement in statements:
                await ex.execute(statement)
            await ex.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                version,
                description,
            )
    return await SqlStorage._mint_server_id(ex)


class PostgresStorage(SqlStorage):
    """``PostgresStorage("postgresql://user@host/db")``; several processes may share one database.

    ``schema`` (optional) keeps the tables in their own PostgreSQL schema, created if missing
    (tests use one per run; a deployment may use it to share a database).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_connections: int = 2,
        max_connections: int = 20,
    ) -> None:
        if schema is not None and _SCHEMA_NAME.fullmatch(schema) is None:
            raise ConfigurationError("schema: lowercase letters, digits and '_' only")
        if not 1 <= min_connections <= max_connections:
            raise ConfigurationError("need 1 <= min_connections <= max_connections")
        self._dsn = dsn
        self._schema = schema
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._server_id = ""
        self._settings: dict[str, str] = {}
        self._kt_conn: Any = None  # the KT lock's own connection (not the pool's)
        self._kt_local = asyncio.Lock()
        super().__init__()
        self._fetches = Coalescer(self._fetch_batch)

    # --- plumbing --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise StateError("storage is already open")
        settings = {"application_name": "doorless"}
        if self._schema is not None:
            conn = await asyncpg.connect(self._dsn)
            try:
                async with conn.transaction():  # processes starting together: one creates it
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('doorless:' || $1))", self._schema
                    )
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
            finally:
                await conn.close()
            settings["search_path"] = self._schema
        self._settings = settings
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min,
            max_size=self._max,
            server_settings=settings,
            # Statements are prepared per connection and cached; the schema never changes
            # under a running server (migrations run before the pool is used).
            statement_cache_size=256,
            reset=_reset_if_needed,
        )
        try:
            self._server_id = await self._run(Tx.WRITE, _migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        kt_conn, self._kt_conn = self._kt_conn, None
        if kt_conn is not None:
            kt_conn.terminate()  # a lock it might hold goes with the session
        pool, self._pool = self._pool, None
        self._server_id = ""
        if pool is not None:
            await pool.close()

    async def _run(self, tx: Tx, op: Op[T], *args: Any) -> T:
        """Several statements: one transaction, retried whole on a deadlock. A single
        statement needs no explicit transaction."""
        if self._pool is None:
            raise StateError("storage is not open")
        pool = self._pool
        try:
            if tx in (Tx.READ, Tx.STATEMENT):
                async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
                    return await op(_Executor(conn), *args)
            for attempt in range(_ATTEMPTS):
                try:
                    async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
                        return await op(_Executor(conn), *args)
                except _RETRYABLE:
                    if attempt == _ATTEMPTS - 1:
                        raise
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(
                f"the database is unavailable ({type(exc).__name__})"
            ) from None
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def kt_lock(self) -> AsyncIterator[None]:
        """A session-level advisory lock, held for the body, on a connection of its own (so a
        publisher holding it still finds pooled connections for its reads and its append,
        even with ``pool_size=1``): the KT log's appends are serialized across every process
        over this database. If that connection dies, PostgreSQL releases the lock with it."""
        if self._pool is None:
            raise StateError("storage is not open")
        async with self._kt_local:
            conn = await self._kt_locked_connection()
            try:
                yield
            finally:
                with contextlib.suppress(*_UNAVAILABLE):  # a dead session holds no lock
                    await conn.execute(_KT_UNLOCK)

    async def _kt_locked_connection(self) -> Any:
        """The lock's connection, holding the lock. A connection PostgreSQL dropped (a restart,
        an outage) is replaced once; unreachable: `StorageUnavailable`."""
        for attempt in range(2):
            conn = self._kt_conn
            try:
                if conn is None or conn.is_closed():
                    conn = self._kt_conn = await asyncpg.connect(
                        self._dsn, server_settings=self._settings, timeout=_ACQUIRE_TIMEOUT
                    )
                await conn.execute(_KT_LOCK)
                return conn
            except _UNAVAILABLE as exc:
                self._kt_conn = None
                if conn is not None:
                    conn.terminate()
                if attempt == 1:
                    raise StorageUnavailable(
                        f"the database is unavailable ({type(exc).__name__})"
                    ) from None
        raise AssertionError("unreachable")

    async def check(self, full: bool = True) -> list[str]:
        """PostgreSQL checks its own pages (checksums, WAL); what is checked here is ours: the
        schema version, and that the KT log is gap-free and every logged version points into
        it. (The log's prefix trees are replayed by `doorless server check`.)"""

        async def op(ex: Executor) -> list[str]:
            problems = []
            version = await ex.fetchval("SELECT MAX(version) FROM schema_migrations")
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            count, top = await ex.fetchrow("SELECT COUNT(*), MAX(idx) FROM kt_log") or (0, None)
            if int(count) != (-1 if top is None else int(top)) + 1:
                problems.append("the KT log has a gap")
            if await ex.fetchval(
                "SELECT COUNT(*) FROM kt_versions WHERE log_index >= $1", int(count)
            ):
                problems.append("a KT version points past the end of the log")
            return problems

        return await self._run(Tx.SNAPSHOT, op)

    async def server_id(self) -> str:
        if not self._server_id:
            raise StateError("storage is not open")
        return self._server_id

    # --- the SQL of PostgreSQL's own ---------------------------------------------------------

    def _any_of(
        self, column: str, param: int, values: Sequence[Any], sqltype: str
    ) -> list[tuple[str, tuple[Any, ...]]]:
        if not values:
            return []
        return [(f"{column} = ANY(${param}::{sqltype}[])", (list(values),))]

    async def send_context(
        self, token_hash: bytes, now: int, group_id: bytes | None, recipients: Sequence[str]
    ) -> SendContext | None:
        """One query (`pg_send.send_context`)."""
        return await self._run(
            Tx.READ, pg_send.send_context, token_hash, now, group_id, frozenset(recipients)
        )

    async def deliver(
        self,
        sender_device_id: str,
        message_id: str,
        digest: bytes,
        parts: Sequence[Delivery],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        """One statement (`pg_send.DeliverCall`), stamped with ``gate.next_seq`` and stamped
        again if another send took that number first; a commit with a validated update, or a
        send that keeps losing its numbers to others, takes the transaction of `_deliver`."""
        if gate is None or gate.update is None:
            call = pg_send.DeliverCall(
                sender_device_id, message_id, digest, tuple(parts), gate, now
            )
            first_seq = None if gate is None else gate.next_seq
            for _ in range(_ATTEMPTS):
                try:
                    return await self._run(Tx.STATEMENT, call.run, first_seq)
                except pg_send.SeqMoved as moved:
                    first_seq = moved.next_seq
                except _RETRYABLE:
                    continue
        return await super().deliver(sender_device_id, message_id, digest, parts, gate, now)

    async def fetch(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        """The sockets a send wakes all fetch at once: one query for them (`Coalescer`)."""
        return await self._fetches.submit((device_id, after, limit))

    async def _fetch_batch(self, reads: list[tuple[str, int, int]]) -> list[list[QueuedMessage]]:
        async def op(ex: Executor) -> list[list[QueuedMessage]]:
            found = await ex.fetch(
                "SELECT r.i, q.seq, p.data, q.received_at, p.frank "
                "FROM unnest($1::text[], $2::bigint[], $3::int[]) "
                "WITH ORDINALITY AS r (d, a, n, i) "
                "CROSS JOIN LATERAL (SELECT seq, payload_id, received_at FROM queue "
                "  WHERE device_id = r.d AND seq > r.a ORDER BY seq LIMIT r.n) q "
                "JOIN payloads p ON p.id = q.payload_id ORDER BY r.i, q.seq",
                [d for d, _, _ in reads],
                [a for _, a, _ in reads],
                [n for _, _, n in reads],
            )
            out: list[list[QueuedMessage]] = [[] for _ in reads]
            for r in found:
                out[int(r[0]) - 1].append(rows.queued(tuple(r)[1:]))
            return out

        return await self._run(Tx.READ, op)

    async def _ack_batch(self, acks: list[Ack]) -> list[int]:
        """One call of ``doorless_ack`` (migration 7): one DELETE over all the batch's
        ``(device, seq)`` pairs, one round trip, retried whole on a deadlock like a
        transaction."""

        async def op(ex: Executor) -> list[int]:
            row = await ex.fetchrow(
                "SELECT o_device, o_seq FROM doorless_ack($1::text[], $2::bigint[])",
                [d for d, seqs in acks for _ in seqs],
                [s for _, seqs in acks for s in seqs],
            )
            assert row is not None  # the function returns one row
            return count_per_ack(acks, zip(row[0] or (), row[1] or (), strict=True))

        for attempt in range(_ATTEMPTS):
            try:
                return await self._run(Tx.STATEMENT, op)
            except _RETRYABLE:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _lock_reporter(self, ex: Executor, username: str) -> None:
        # Two racing copies of one report could each find none filed: lock the account row.
        await ex.execute("SELECT true FROM accounts WHERE username = $1 FOR UPDATE", username)

    async def _lock_key_packages(self, ex: Executor, device_id: str) -> None:
        # Two racing uploads could each pass the limit check: lock the device row first.
        await ex.execute("SELECT true FROM devices WHERE device_id = $1 FOR UPDATE", device_id)

    async def _insert_key_packages(
        self, ex: Executor, device_id: str, key_packages: Sequence[bytes], cipher_suite: int
    ) -> None:
        await ex.execute(
            "INSERT INTO key_packages (device_id, data, last_resort, cipher_suite) "
            "SELECT $1, data, false, $3 FROM unnest($2::bytea[]) WITH ORDINALITY AS k (data, n) "
            "ORDER BY n",
            device_id,
            list(key_packages),
            cipher_suite,
        )

    # --- row locks and batches ----------------------------------------------------------

    async def _release_payloads(self, ex: Executor, payload_ids: list[int]) -> None:
        """`SqlHooks._release_payloads`. Each payload's ``remaining`` is decremented under its
        row lock, taken in id order (no deadlock between devices releasing the same payloads);
        READ COMMITTED applies each decrement to the newest value, so the transaction that
        brings it to zero, and only that one, deletes the payload."""
        if not payload_ids:
            return
        released = Counter(payload_ids)
        ids = sorted(released)
        await ex.execute(
            "WITH locked AS MATERIALIZED ("
            "  SELECT id FROM payloads WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"
            ") "
            "UPDATE payloads p SET remaining = p.remaining - r.n "
            "FROM unnest($1::bigint[], $2::int[]) AS r (id, n) "
            "WHERE p.id = r.id AND p.id IN (SELECT id FROM locked)",
            ids,
            [released[i] for i in ids],
        )
        await ex.execute(
            "DELETE FROM payloads WHERE id = ANY($1::bigint[]) AND remaining <= 0", ids
        )

    async def _claim_key_package(
        self, ex: Executor, device_id: str, cipher_suite: int | None
    ) -> ClaimedKeyPackage | None:
        where, args = suite_filter(cipher_suite, 2)
        # SKIP LOCKED: two claimers racing for one device's packages take different ones
        # instead of both getting (or waiting for) the same row.
        row = await ex.fetchrow(
            f"SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 {where} "
            "ORDER BY last_resort, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            device_id,
            *args,
        )
        if row is None:
            row = await ex.fetchrow(  # only the (shared) last-resort package may be left
                "SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 "
                f"AND last_resort {where} LIMIT 1",
                device_id,
                *args,
            )
            if row is None:
                return None
        if not row[2]:  # one-time packages are consumed; the last-resort one stays
            await ex.execute("DELETE FROM key_packages WHERE id = $1", row[0])
        return ClaimedKeyPackage(device_id, bytes(row[1]), bool(row[2]))

    @staticmethod
    async def _check_gate(ex: Executor, gate: EpochGate, stamps: int) -> tuple[int, int]:
        """Apply the one-commit-per-epoch rule and reserve ``stamps`` franking sequence numbers
        of the group; returns ``(the group's epoch after this message, first reserved number)``.

        * Commit for epoch e: ``UPDATE ... SET epoch = e + 1 WHERE epoch = e``. Two commits for e
          racing on two nodes both try it; the second waits for the first's row lock and, once the
          first commits, READ COMMITTED re-checks ``epoch = e`` against the new row (e + 1): no row
          matches, it is rejected. If the first rolls back, the second succeeds. Exactly one wins.
        * Any other group message locks the group row too: exclusively when it reserves franking
          numbers (an UPDATE, so numbers follow commit order), else shared (FOR SHARE). Either
          way a racing commit waits for it: the message is queued before the commit in every
          queue, never an epoch-e message after the e -> e + 1 commit. (A shared lock is never
          upgraded later in the transaction, which could deadlock two senders.)
        * First message of a group: ``INSERT ... ON CONFLICT DO NOTHING``; a racing first insert
          waits for it and then takes the paths above.
        """
        after = gate.epoch + 1 if gate.is_commit else gate.epoch
        if await ex.fetchval(
            "INSERT INTO group_epochs (group_id, epoch, next_seq) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            gate.group_id,
            after,
            1 + stamps,
        ):
            return after, 1
        if gate.is_commit:
            first = await ex.fetchval(
                "UPDATE group_epochs SET epoch = $3, next_seq = next_seq + $4 "
                "WHERE group_id = $1 AND epoch = $2 RETURNING next_seq - $4",
                gate.group_id,
                gate.epoch,
                after,
                stamps,
            )
            if first is not None:
                return after, int(first)
            current = await ex.fetchval(
                "SELECT epoch FROM group_epochs WHERE group_id = $1", gate.group_id
            )
        elif stamps:
            row = await ex.fetchrow(
                "UPDATE group_epochs SET next_seq = next_seq + $2 WHERE group_id = $1 "
                "RETURNING epoch, next_seq - $2",
                gate.group_id,
                stamps,
            )
            assert row is not None
            current = row[0]
            if current == gate.epoch:  # (if not, the rollback returns the numbers)
                return after, int(row[1])
        else:
            current = await ex.fetchval(
                "SELECT epoch FROM group_epochs WHERE group_id = $1 FOR SHARE", gate.group_id
            )
            if current == gate.epoch:
                return after, 0
        what = "commit" if gate.is_commit else "message"
        raise EpochConflict(
            int(current), f"{what} is for epoch {gate.epoch}, the group is at epoch {current}"
        )

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
        """One transaction: the idempotency record, the epoch gate and every queue entry commit
        together or not at all.

        1. The idempotency row is inserted *first*: a retry racing the original (the client gave up
           waiting and resent through another node) blocks on its unique key until the original
           commits, then finds it and answers ``duplicate`` (instead of, say, losing the epoch to
           its own original). If the original rolled back, the retry proceeds as the first.
        2. The epoch gate (`_check_gate`).
        3. Recipient device rows are locked in id order (``FOR NO KEY UPDATE``) while their
           ``next_seq`` is advanced. The lock is held until commit, so a device's seqs are
           assigned in commit order: a reader that has seen seq n never later finds a newly
           committed entry below n (the push loop's ``fetch(after=n)`` relies on this). Revoked or
           unknown devices are not returned by the locking read: the send is refused whole.
        """
        # The gate either leaves the group at this epoch or refuses the send (and the rollback
        # takes the row back): the row is written once, with it, instead of updated after.
        group_epoch = None if gate is None else gate.epoch + 1 if gate.is_commit else gate.epoch
        first = await ex.fetchval(
            "INSERT INTO sent (sender_device_id, message_id, digest, group_epoch, created_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            sender,
            message_id,
            digest,
            group_epoch,
            now,
        )
        if not first:
            row = await ex.fetchrow(
                "SELECT digest, group_epoch FROM sent "
                "WHERE sender_device_id = $1 AND message_id = $2",
                sender,
                message_id,
            )
            if row is None:  # purged between the two statements: let the retry insert it
                raise asyncpg.SerializationError("idempotency record vanished")
            if bytes(row[0]) != digest:
                raise IdempotencyConflict("message id already used for different content")
            return DeliveryResult(message_id, row[1], duplicate=True)

        per_part = [tuple(dict.fromkeys(p.recipients)) for p in parts]
        # Parts stamped with a franking number (application messages, which always have a gate);
        # like SQLite, a part without recipients gets none.
        stamped = [p.stamp is not None and bool(r) for p, r in zip(parts, per_part, strict=True)]
        group_seq = 0
        if gate is not None:
            after, group_seq = await self._check_gate(ex, gate, sum(stamped))
            assert after == group_epoch  # what the idempotency row already says
            await self._apply_group_update(ex, gate)

        counts = Counter(d for recipients in per_part for d in recipients)
        wanted = sorted(counts)
        queued: list[tuple[str, QueuedMessage]] = []
        if wanted:
            rows = await ex.fetch(
                "WITH locked AS MATERIALIZED ("
                "  SELECT device_id FROM devices WHERE device_id = ANY($1::text[]) "
                "  AND revoked_at IS NULL ORDER BY device_id FOR NO KEY UPDATE"
                ") "
                "UPDATE devices d SET next_seq = d.next_seq + c.n "
                "FROM unnest($1::text[], $2::int[]) AS c (device_id, n) "
                "WHERE d.device_id = c.device_id AND d.device_id IN (SELECT device_id FROM locked) "
                "RETURNING d.device_id, d.next_seq - c.n",
                wanted,
                [counts[d] for d in wanted],
            )
            next_seq = {str(r[0]): int(r[1]) for r in rows}
            missing = [d for d in wanted if d not in next_seq]
            if missing:
                raise UnknownDevice(missing)
            for part, recipients, is_stamped in zip(parts, per_part, stamped, strict=True):
                if not recipients:  # e.g. a commit in a one-member group: only the epoch moves
                    continue
                frank = None
                if is_stamped:
                    assert part.stamp is not None
                    frank = part.stamp(group_seq)
                    group_seq += 1
                seqs = [next_seq[d] for d in recipients]
                for device_id, seq in zip(recipients, seqs, strict=True):
                    next_seq[device_id] += 1
                    queued.append((device_id, QueuedMessage(seq, part.data, now, frank)))
                # The payload and its queue entries in one statement (one round trip).
                await ex.execute(
                    "WITH p AS (INSERT INTO payloads (data, remaining, frank) "
                    "VALUES ($1, $2, $3) RETURNING id) "
                    "INSERT INTO queue (device_id, seq, payload_id, received_at) "
                    "SELECT q.d, q.s, p.id, $6 "
                    "FROM unnest($4::text[], $5::bigint[]) AS q (d, s), p",
                    part.data,
                    len(recipients),
                    frank,
                    list(recipients),
                    seqs,
                    now,
                )
        return DeliveryResult(
            message_id, group_epoch, duplicate=False, queued=queued_per_device(queued)
        )
