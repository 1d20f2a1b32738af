"""The scale-out store: PostgreSQL through asyncpg, shared by any number of server processes.

Same interface, same tables and the same versioned migrations as `SQLiteStorage` (only the
column types are PostgreSQL's). What changes is concurrency: SQLite serializes every transaction
on one connection, while here several processes run transactions at the same time, so each
operation the delivery guarantees depend on says below how it stays correct.

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

Durability: ``synchronous_commit`` stays on (the server default): a transaction that returned
is in the write-ahead log on disk, so a message acknowledged to its sender survives a crash of
any server process or of PostgreSQL itself (I5).

Deleted rows (acknowledged ciphertext) stay in dead tuples until VACUUM reclaims the space;
they are ciphertext only (I1), and autovacuum reclaims them. Schedule a regular VACUUM if a
deployment wants them gone sooner (docs/deploy.md).
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import asyncpg

from doorless.errors import ConfigurationError, StateError
from doorless.server.storage.base import (
    AttachmentRecord,
    ClaimedKeyPackage,
    Delivery,
    DeliveryResult,
    DeviceExists,
    DeviceRecord,
    EpochConflict,
    EpochGate,
    FrankingKeyRecord,
    FrankingKeys,
    IdempotencyConflict,
    InviteInvalid,
    KeyPackageCount,
    KtConflict,
    KtLogEntry,
    KtVersion,
    LinkGone,
    LinkRecord,
    ReportRecord,
    Storage,
    TooManyKeyPackages,
    UnknownAccount,
    UnknownDevice,
    UsernameTaken,
)
from doorless.wire.messages import QueuedMessage

T = TypeVar("T")

# Versioned migrations, the same versions as `doorless.server.storage.sqlite.MIGRATIONS` (a test
# checks that they stay in step). Never edit a released one: append a new version.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE accounts (username TEXT PRIMARY KEY, created_at BIGINT NOT NULL)",
            """CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_key BYTEA NOT NULL UNIQUE,
                approved_by TEXT,
                approval_signature BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                revoked_at BIGINT,
                next_seq BIGINT NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX devices_by_username ON devices (username)",
            """CREATE TABLE invites (
                code_hash BYTEA PRIMARY KEY,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )""",
            """CREATE TABLE challenges (
                nonce_hash BYTEA PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_hash BYTEA PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX tokens_by_device ON tokens (device_id)",
            """CREATE TABLE links (
                code TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_id TEXT NOT NULL,
                device_key BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                approved_at BIGINT
            )""",
            """CREATE TABLE key_packages (
                id BIGSERIAL PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                data BYTEA NOT NULL,
                last_resort BOOLEAN NOT NULL
            )""",
            "CREATE INDEX key_packages_by_device ON key_packages (device_id, last_resort, id)",
            """CREATE TABLE group_epochs (
                group_id BYTEA PRIMARY KEY,
                epoch BIGINT NOT NULL
            )""",
            """CREATE TABLE payloads (
                id BIGSERIAL PRIMARY KEY,
                data BYTEA NOT NULL,
                remaining INTEGER NOT NULL
            )""",
            # Ciphertext does not compress: do not spend CPU trying.
            "ALTER TABLE payloads ALTER COLUMN data SET STORAGE EXTERNAL",
            """CREATE TABLE queue (
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                seq BIGINT NOT NULL,
                payload_id BIGINT NOT NULL REFERENCES payloads (id),
                received_at BIGINT NOT NULL,
                PRIMARY KEY (device_id, seq)
            )""",
            "CREATE INDEX queue_by_payload ON queue (payload_id)",
            """CREATE TABLE sent (
                sender_device_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                digest BYTEA NOT NULL,
                group_epoch BIGINT,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (sender_device_id, message_id)
            )""",
            "CREATE INDEX sent_by_age ON sent (created_at)",
            """CREATE TABLE attachments (
                attachment_id TEXT PRIMARY KEY,
                size BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX attachments_by_expiry ON attachments (expires_at)",
        ),
    ),
    (
        2,
        "key transparency",
        (
            # Versions of KT labels; log_index is NULL while the version waits to be logged.
            """CREATE TABLE kt_versions (
                label BYTEA NOT NULL,
                version BIGINT NOT NULL,
                value BYTEA NOT NULL,
                opening BYTEA NOT NULL,
                search_key BYTEA NOT NULL UNIQUE,
                commitment BYTEA NOT NULL,
                log_index BIGINT,
                PRIMARY KEY (label, version)
            )""",
            "CREATE INDEX kt_versions_by_entry ON kt_versions (log_index, search_key)",
            """CREATE TABLE kt_log (
                idx BIGINT PRIMARY KEY,
                timestamp_ms BIGINT NOT NULL,
                prefix_root BYTEA NOT NULL,
                checkpoint BYTEA NOT NULL
            )""",
            """CREATE TABLE kt_cosignatures (
                size BIGINT NOT NULL,
                witness TEXT NOT NULL,
                signature_line TEXT NOT NULL,
                cosigned_at BIGINT NOT NULL,
                PRIMARY KEY (size, witness)
            )""",
        ),
    ),
    (
        3,
        "message franking, abuse reports, blocks",
        (
            # The server's frank of an application message, fanned out with it.
            "ALTER TABLE payloads ADD COLUMN frank BYTEA",
            # The server's sequence number of franked messages in each group.
            "ALTER TABLE group_epochs ADD COLUMN next_seq BIGINT NOT NULL DEFAULT 1",
            """CREATE TABLE franking_signer (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                signing_key BYTEA NOT NULL
            )""",
            """CREATE TABLE franking_keys (
                key_id BIGINT PRIMARY KEY,
                hmac_key BYTEA NOT NULL,
                created_at_ms BIGINT NOT NULL,
                retired_at_ms BIGINT
            )""",
            """CREATE TABLE reports (
                report_id BIGSERIAL PRIMARY KEY,
                reporter_username TEXT NOT NULL,
                reporter_device_id TEXT NOT NULL,
                sender_username TEXT NOT NULL,
                sender_device_id TEXT NOT NULL,
                group_id BYTEA NOT NULL,
                server_seq BIGINT NOT NULL,
                reason TEXT NOT NULL,
                report BYTEA NOT NULL,
                attachments TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            """CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts (username),
                blocked TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )""",
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

# Lock contention the database resolves by aborting one transaction: retry it whole.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 5

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_DEVICE_COLUMNS = (
    "device_id, username, device_key, approved_by, approval_signature, created_at, revoked_at"
)


def _device(row: asyncpg.Record) -> DeviceRecord:
    return DeviceRecord(
        device_id=row[0],
        username=row[1],
        device_key=bytes(row[2]),
        approved_by=row[3],
        approval_signature=bytes(row[4]),
        created_at=row[5],
        revoked_at=row[6],
    )


Conn: TypeAlias = asyncpg.Connection


class PostgresStorage(Storage):
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
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min,
            max_size=self._max,
            server_settings=settings,
            # Statements are prepared per connection and cached; the schema never changes
            # under a running server (migrations run before the pool is used).
            statement_cache_size=256,
        )
        try:
            self._server_id = await self._run(_migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._server_id = ""
        if pool is not None:
            await pool.close()

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction, retrying it whole on a deadlock."""
        if self._pool is None:
            raise StateError("storage is not open")
        for attempt in range(_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await fn(conn, *args)
            except _RETRYABLE:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _one(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A single read statement needs no explicit transaction."""
        if self._pool is None:
            raise StateError("storage is not open")
        async with self._pool.acquire() as conn:
            return await fn(conn, *args)

    async def server_id(self) -> str:
        if not self._server_id:
            raise StateError("storage is not open")
        return self._server_id

    # --- invites, accounts, devices --------------------------------------------------------

    async def create_invite(self, code_hash: bytes, now: int, expires_at: int) -> None:
        await self._run(_create_invite, code_hash, now, expires_at)

    async def create_account(
        self,
        device: DeviceRecord,
        invite_code_hash: bytes | None,
        now: int,
        kt: KtVersion | None = None,
    ) -> None:
        await self._run(_create_account, device, invite_code_hash, now, kt)

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        return await self._one(_get_device, device_id)

    async def list_devices(self, username: str) -> list[DeviceRecord] | None:
        return await self._run(_list_devices, username)

    async def revoke_device(self, device_id: str, now: int, kt: KtVersion | None = None) -> None:
        await self._run(_revoke_device, device_id, now, kt)

    # --- authentication --------------------------------------------------------------------

    async def put_challenge(self, nonce_hash: bytes, expires_at: int) -> None:
        await self._one(_put_challenge, nonce_hash, expires_at)

    async def take_challenge(self, nonce_hash: bytes, now: int) -> bool:
        return await self._one(_take_challenge, nonce_hash, now)

    async def put_token(self, token_hash: bytes, device_id: str, expires_at: int) -> None:
        await self._one(_put_token, token_hash, device_id, expires_at)

    async def token_device(self, token_hash: bytes, now: int) -> tuple[str, int] | None:
        return await self._one(_token_device, token_hash, now)

    # --- links -----------------------------------------------------------------------------

    async def create_link(self, link: LinkRecord) -> bool:
        return await self._run(_create_link, link)

    async def get_link(self, code: str, now: int) -> LinkRecord | None:
        return await self._one(_get_link, code, now)

    async def approve_link(
        self, code: str, device: DeviceRecord, now: int, kt: KtVersion | None = None
    ) -> None:
        await self._run(_approve_link, code, device, now, kt)

    # --- key packages ----------------------------------------------------------------------

    async def add_key_packages(
        self, device_id: str, key_packages: Sequence[bytes], last_resort: bytes | None, limit: int
    ) -> KeyPackageCount:
        return await self._run(
            _add_key_packages, device_id, tuple(key_packages), last_resort, limit
        )

    async def claim_key_package(self, device_id: str) -> ClaimedKeyPackage | None:
        return await self._run(_claim_key_package, device_id)

    async def key_package_count(self, device_id: str) -> KeyPackageCount:
        return await self._one(_key_package_count, device_id)

    # --- delivery --------------------------------------------------------------------------

    async def deliver(
        self,
        sender_device_id: str,
        message_id: str,
        digest: bytes,
        parts: Sequence[Delivery],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        return await self._run(
            _deliver, sender_device_id, message_id, digest, tuple(parts), gate, now
        )

    async def fetch(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        return await self._one(_fetch, device_id, after, limit)

    async def ack(self, device_id: str, seqs: Sequence[int]) -> int:
        if not seqs:
            return 0
        return await self._run(_ack, device_id, sorted(set(seqs)))

    async def group_epoch(self, group_id: bytes) -> int | None:
        return await self._one(_group_epoch, group_id)

    # --- attachments -----------------------------------------------------------------------

    async def add_attachment(self, record: AttachmentRecord) -> None:
        await self._one(_add_attachment, record)

    async def get_attachment(self, attachment_id: str, now: int) -> AttachmentRecord | None:
        return await self._one(_get_attachment, attachment_id, now)

    async def attachment_ids(self) -> set[str]:
        return await self._one(_attachment_ids)

    async def take_expired_attachments(self, now: int) -> list[str]:
        return await self._one(_take_expired_attachments, now)

    async def purge_expired(self, now: int, idempotency_cutoff: int) -> None:
        await self._run(_purge_expired, now, idempotency_cutoff)

    # --- franking, reports, blocks ---------------------------------------------------------

    async def franking_keys(self, initial: FrankingKeys) -> FrankingKeys:
        return await self._run(_franking_keys, initial)

    async def rotate_franking_key(self, current_key_id: int, new_key: FrankingKeyRecord) -> bool:
        return await self._run(_rotate_franking_key, current_key_id, new_key)

    async def delete_franking_keys(self, key_ids: Sequence[int]) -> int:
        return await self._one(_delete_franking_keys, list(key_ids))

    async def add_report(self, report: ReportRecord) -> int:
        return await self._one(_add_report, report)

    async def list_reports(self, after_id: int, limit: int) -> list[ReportRecord]:
        return await self._one(_list_reports, after_id, limit)

    async def delete_reports(self, report_ids: Sequence[int]) -> int:
        return await self._one(_delete_reports, list(report_ids))

    async def set_block(self, blocker: str, blocked: str, block: bool, now: int) -> None:
        await self._one(_set_block, blocker, blocked, block, now)

    async def list_blocks(self, blocker: str) -> list[str]:
        return await self._one(_list_blocks, blocker)

    async def blocking_devices(self, sender: str, device_ids: Sequence[str]) -> set[str]:
        if not device_ids:
            return set()
        return await self._one(_blocking_devices, sender, list(device_ids))

    # --- key transparency ------------------------------------------------------------------

    async def kt_signing_seed(self) -> bytes:
        return await self._run(_kt_signing_seed)

    async def kt_latest_version(self, label: bytes) -> KtVersion | None:
        return await self._one(_kt_latest_version, label)

    async def kt_versions(self, label: bytes, start: int) -> list[KtVersion]:
        return await self._one(_kt_versions, label, start)

    async def kt_pending(self) -> list[KtVersion]:
        return await self._one(_kt_pending)

    async def kt_append(self, entry: KtLogEntry) -> None:
        await self._run(_kt_append, entry)

    async def kt_entries(self, start: int, limit: int) -> list[KtLogEntry]:
        return await self._run(_kt_entries, start, limit)

    async def kt_add_cosignature(
        self, size: int, witness: str, signature_line: str, now: int
    ) -> None:
        await self._run(_kt_add_cosignature, size, witness, signature_line, now)

    async def kt_cosignatures(self, size: int) -> list[str]:
        return await self._one(_kt_cosignatures, size)


# --- the work, each function inside one transaction (or one statement) ----------------------


async def _migrate(conn: Conn) -> str:
    # Several server processes may start at once against a new database: a transaction-scoped
    # advisory lock (per schema) lets one of them migrate while the others wait, then find
    # nothing left to do. DDL is transactional in PostgreSQL, so a failed migration leaves
    # nothing behind.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('doorless:' || current_schema()))")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
    )
    current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {current} is newer than this server ({SCHEMA_VERSION})"
        )
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        async with conn.transaction():  # a savepoint per version, as SQLite's one per version
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                version,
                description,
            )
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING",
        secrets.token_hex(16),
    )
    return str(await conn.fetchval("SELECT value FROM meta WHERE key = 'server_id'"))


async def _create_invite(conn: Conn, code_hash: bytes, now: int, expires_at: int) -> None:
    await conn.execute(
        "INSERT INTO invites (code_hash, created_at, expires_at) VALUES ($1, $2, $3)",
        code_hash,
        now,
        expires_at,
    )


async def _insert_device(conn: Conn, d: DeviceRecord) -> None:
    # The unique constraints decide races between processes; the pre-check only gives the
    # common case its precise error.
    inserted = await conn.fetchval(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT DO NOTHING RETURNING true",
        d.device_id,
        d.username,
        d.device_key,
        d.approved_by,
        d.approval_signature,
        d.created_at,
        d.revoked_at,
    )
    if not inserted:
        raise DeviceExists("this device key is already registered")


async def _create_account(
    conn: Conn, device: DeviceRecord, invite_code_hash: bytes | None, now: int, kt: KtVersion | None
) -> None:
    if invite_code_hash is not None:
        # DELETE ... RETURNING: of two racing registrations with one code, one gets the row.
        used = await conn.fetchval(
            "DELETE FROM invites WHERE code_hash = $1 AND expires_at > $2 RETURNING true",
            invite_code_hash,
            now,
        )
        if not used:
            raise InviteInvalid("unknown, used or expired invite code")
    created = await conn.fetchval(
        "INSERT INTO accounts (username, created_at) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING true",
        device.username,
        now,
    )
    if not created:
        raise UsernameTaken("username is taken")  # the rollback restores the invite
    await _insert_device(conn, device)
    if kt is not None:
        await _insert_kt_version(conn, kt)


async def _get_device(conn: Conn, device_id: str) -> DeviceRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = $1", device_id
    )
    return _device(row) if row else None


async def _list_devices(conn: Conn, username: str) -> list[DeviceRecord] | None:
    if not await conn.fetchval("SELECT true FROM accounts WHERE username = $1", username):
        return None
    rows = await conn.fetch(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE username = $1 ORDER BY created_at, device_id",
        username,
    )
    return [_device(r) for r in rows]


async def _drop_queue_entries(conn: Conn, device_id: str, seqs: Sequence[int] | None) -> int:
    """Delete queue entries (all of the device's if ``seqs`` is None) and release their
    payloads; returns how many existed.

    ``DELETE ... RETURNING`` hands each entry to one transaction only, so an entry acked twice
    at once (two sockets, two nodes) releases its payload once. Each payload's ``remaining``
    is decremented under its row lock, taken in id order (no deadlock between devices acking
    the same payloads); READ COMMITTED applies each decrement to the newest value, so the
    transaction that brings it to zero, and only that one, deletes the payload.
    """
    if seqs is None:
        rows = await conn.fetch(
            "DELETE FROM queue WHERE device_id = $1 RETURNING payload_id", device_id
        )
    else:
        rows = await conn.fetch(
            "DELETE FROM queue WHERE device_id = $1 AND seq = ANY($2::bigint[]) "
            "RETURNING payload_id",
            device_id,
            seqs,
        )
    if not rows:
        return 0
    released = Counter(int(r[0]) for r in rows)
    ids = sorted(released)
    await conn.execute(
        "WITH locked AS MATERIALIZED ("
        "  SELECT id FROM payloads WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"
        ") "
        "UPDATE payloads p SET remaining = p.remaining - r.n "
        "FROM unnest($1::bigint[], $2::int[]) AS r (id, n) "
        "WHERE p.id = r.id AND p.id IN (SELECT id FROM locked)",
        ids,
        [released[i] for i in ids],
    )
    await conn.execute("DELETE FROM payloads WHERE id = ANY($1::bigint[]) AND remaining <= 0", ids)
    return len(rows)


async def _revoke_device(conn: Conn, device_id: str, now: int, kt: KtVersion | None) -> None:
    if kt is not None:
        await _insert_kt_version(conn, kt)
    # Locks the device row (as a send to it does), so a send that raced the revocation
    # either committed before it (and its entry is dropped here) or sees it revoked.
    await conn.execute(
        "UPDATE devices SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL",
        now,
        device_id,
    )
    await conn.execute("DELETE FROM tokens WHERE device_id = $1", device_id)
    await conn.execute("DELETE FROM key_packages WHERE device_id = $1", device_id)
    await _drop_queue_entries(conn, device_id, None)


async def _put_challenge(conn: Conn, nonce_hash: bytes, expires_at: int) -> None:
    await conn.execute(
        "INSERT INTO challenges (nonce_hash, expires_at) VALUES ($1, $2)", nonce_hash, expires_at
    )


async def _take_challenge(conn: Conn, nonce_hash: bytes, now: int) -> bool:
    # One statement: of two racing uses of a nonce, only one gets the row.
    expires_at = await conn.fetchval(
        "DELETE FROM challenges WHERE nonce_hash = $1 RETURNING expires_at", nonce_hash
    )
    return expires_at is not None and expires_at > now


async def _put_token(conn: Conn, token_hash: bytes, device_id: str, expires_at: int) -> None:
    await conn.execute(
        "INSERT INTO tokens (token_hash, device_id, expires_at) VALUES ($1, $2, $3)",
        token_hash,
        device_id,
        expires_at,
    )


async def _token_device(conn: Conn, token_hash: bytes, now: int) -> tuple[str, int] | None:
    row = await conn.fetchrow(
        "SELECT t.device_id, t.expires_at FROM tokens t JOIN devices d "
        "ON d.device_id = t.device_id "
        "WHERE t.token_hash = $1 AND t.expires_at > $2 AND d.revoked_at IS NULL",
        token_hash,
        now,
    )
    return (str(row[0]), int(row[1])) if row else None


async def _create_link(conn: Conn, link: LinkRecord) -> bool:
    if not await conn.fetchval("SELECT true FROM accounts WHERE username = $1", link.username):
        raise UnknownAccount("no such user")
    if await conn.fetchval("SELECT true FROM devices WHERE device_key = $1", link.device_key):
        raise DeviceExists("this device key is already registered")
    inserted = await conn.fetchval(
        "INSERT INTO links (code, username, device_id, device_key, created_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO NOTHING RETURNING true",
        link.code,
        link.username,
        link.device_id,
        link.device_key,
        link.created_at,
        link.expires_at,
    )
    return bool(inserted)


async def _get_link(conn: Conn, code: str, now: int) -> LinkRecord | None:
    row = await conn.fetchrow(
        "SELECT code, username, device_id, device_key, created_at, expires_at, approved_at "
        "FROM links WHERE code = $1 AND expires_at > $2",
        code,
        now,
    )
    if row is None:
        return None
    return LinkRecord(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6])


async def _approve_link(
    conn: Conn, code: str, device: DeviceRecord, now: int, kt: KtVersion | None
) -> None:
    # Conditional update: of two racing approvals, the second finds approved_at set.
    approved = await conn.fetchval(
        "UPDATE links SET approved_at = $1 WHERE code = $2 AND expires_at > $1 "
        "AND approved_at IS NULL AND username = $3 AND device_id = $4 AND device_key = $5 "
        "RETURNING true",
        now,
        code,
        device.username,
        device.device_id,
        device.device_key,
    )
    if not approved:
        raise LinkGone("no pending link request with this code")
    await _insert_device(conn, device)
    if kt is not None:
        await _insert_kt_version(conn, kt)


async def _key_package_count(conn: Conn, device_id: str) -> KeyPackageCount:
    row = await conn.fetchrow(
        "SELECT COUNT(*) FILTER (WHERE NOT last_resort), COALESCE(BOOL_OR(last_resort), false) "
        "FROM key_packages WHERE device_id = $1",
        device_id,
    )
    assert row is not None
    return KeyPackageCount(int(row[0]), bool(row[1]))


async def _add_key_packages(
    conn: Conn,
    device_id: str,
    key_packages: tuple[bytes, ...],
    last_resort: bytes | None,
    limit: int,
) -> KeyPackageCount:
    # Serialize uploads of one device (two racing uploads could each pass the limit check).
    await conn.execute("SELECT true FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
    before = await _key_package_count(conn, device_id)
    if before.count + len(key_packages) > limit:
        raise TooManyKeyPackages(
            f"a device may hold at most {limit} key packages ({before.count} stored)"
        )
    if key_packages:
        await conn.execute(
            "INSERT INTO key_packages (device_id, data, last_resort) "
            "SELECT $1, data, false FROM unnest($2::bytea[]) WITH ORDINALITY AS k (data, n) "
            "ORDER BY n",
            device_id,
            list(key_packages),
        )
    if last_resort is not None:
        await conn.execute(
            "DELETE FROM key_packages WHERE device_id = $1 AND last_resort", device_id
        )
        await conn.execute(
            "INSERT INTO key_packages (device_id, data, last_resort) VALUES ($1, $2, true)",
            device_id,
            last_resort,
        )
    return await _key_package_count(conn, device_id)


async def _claim_key_package(conn: Conn, device_id: str) -> ClaimedKeyPackage | None:
    # SKIP LOCKED: two claimers racing for one device's packages take different ones
    # instead of both getting (or waiting for) the same row.
    row = await conn.fetchrow(
        "SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 "
        "ORDER BY last_resort, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        device_id,
    )
    if row is None:
        row = await conn.fetchrow(  # only the (shared) last-resort package may be left
            "SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 "
            "AND last_resort LIMIT 1",
            device_id,
        )
        if row is None:
            return None
    if not row[2]:  # one-time packages are consumed; the last-resort one stays
        await conn.execute("DELETE FROM key_packages WHERE id = $1", row[0])
    return ClaimedKeyPackage(device_id, bytes(row[1]), bool(row[2]))


async def _check_gate(conn: Conn, gate: EpochGate, stamps: int) -> tuple[int, int]:
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
    if await conn.fetchval(
        "INSERT INTO group_epochs (group_id, epoch, next_seq) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true",
        gate.group_id,
        after,
        1 + stamps,
    ):
        return after, 1
    if gate.is_commit:
        first = await conn.fetchval(
            "UPDATE group_epochs SET epoch = $3, next_seq = next_seq + $4 "
            "WHERE group_id = $1 AND epoch = $2 RETURNING next_seq - $4",
            gate.group_id,
            gate.epoch,
            after,
            stamps,
        )
        if first is not None:
            return after, int(first)
        current = await conn.fetchval(
            "SELECT epoch FROM group_epochs WHERE group_id = $1", gate.group_id
        )
    elif stamps:
        row = await conn.fetchrow(
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
        current = await conn.fetchval(
            "SELECT epoch FROM group_epochs WHERE group_id = $1 FOR SHARE", gate.group_id
        )
        if current == gate.epoch:
            return after, 0
    what = "commit" if gate.is_commit else "message"
    raise EpochConflict(
        int(current), f"{what} is for epoch {gate.epoch}, the group is at epoch {current}"
    )


async def _deliver(
    conn: Conn,
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
    first = await conn.fetchval(
        "INSERT INTO sent (sender_device_id, message_id, digest, group_epoch, created_at) "
        "VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING RETURNING true",
        sender,
        message_id,
        digest,
        now,
    )
    if not first:
        row = await conn.fetchrow(
            "SELECT digest, group_epoch FROM sent WHERE sender_device_id = $1 AND message_id = $2",
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
    group_epoch: int | None = None
    group_seq = 0
    if gate is not None:
        group_epoch, group_seq = await _check_gate(conn, gate, sum(stamped))

    counts = Counter(d for recipients in per_part for d in recipients)
    wanted = sorted(counts)
    if wanted:
        rows = await conn.fetch(
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
        q_devices: list[str] = []
        q_seqs: list[int] = []
        q_payloads: list[int] = []
        for part, recipients, is_stamped in zip(parts, per_part, stamped, strict=True):
            if not recipients:  # e.g. a commit in a one-member group: only the epoch moves
                continue
            frank = None
            if is_stamped:
                assert part.stamp is not None
                frank = part.stamp(group_seq)
                group_seq += 1
            payload_id = await conn.fetchval(
                "INSERT INTO payloads (data, remaining, frank) VALUES ($1, $2, $3) RETURNING id",
                part.data,
                len(recipients),
                frank,
            )
            for device_id in recipients:
                q_devices.append(device_id)
                q_seqs.append(next_seq[device_id])
                q_payloads.append(payload_id)
                next_seq[device_id] += 1
        await conn.execute(
            "INSERT INTO queue (device_id, seq, payload_id, received_at) "
            "SELECT d, s, p, $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q (d, s, p)",
            q_devices,
            q_seqs,
            q_payloads,
            now,
        )
    if group_epoch is not None:
        await conn.execute(
            "UPDATE sent SET group_epoch = $3 WHERE sender_device_id = $1 AND message_id = $2",
            sender,
            message_id,
            group_epoch,
        )
    return DeliveryResult(message_id, group_epoch, duplicate=False)


async def _fetch(conn: Conn, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
    rows = await conn.fetch(
        "SELECT q.seq, p.data, q.received_at, p.frank FROM queue q "
        "JOIN payloads p ON p.id = q.payload_id "
        "WHERE q.device_id = $1 AND q.seq > $2 ORDER BY q.seq LIMIT $3",
        device_id,
        after,
        limit,
    )
    return [
        QueuedMessage(int(r[0]), bytes(r[1]), int(r[2]), None if r[3] is None else bytes(r[3]))
        for r in rows
    ]


async def _ack(conn: Conn, device_id: str, seqs: list[int]) -> int:
    # The one write that need not wait for the disk: an ack lost in a database crash only
    # means the message is pushed again, and clients deduplicate (I5 is about the opposite:
    # never losing what was acknowledged to the sender). Saves an fsync per ack.
    await conn.execute("SET LOCAL synchronous_commit TO off")
    return await _drop_queue_entries(conn, device_id, seqs)


async def _group_epoch(conn: Conn, group_id: bytes) -> int | None:
    epoch = await conn.fetchval("SELECT epoch FROM group_epochs WHERE group_id = $1", group_id)
    return int(epoch) if epoch is not None else None


async def _add_attachment(conn: Conn, a: AttachmentRecord) -> None:
    await conn.execute(
        "INSERT INTO attachments (attachment_id, size, created_at, expires_at) "
        "VALUES ($1, $2, $3, $4)",
        a.attachment_id,
        a.size,
        a.created_at,
        a.expires_at,
    )


async def _get_attachment(conn: Conn, attachment_id: str, now: int) -> AttachmentRecord | None:
    row = await conn.fetchrow(
        "SELECT attachment_id, size, created_at, expires_at FROM attachments "
        "WHERE attachment_id = $1 AND expires_at > $2",
        attachment_id,
        now,
    )
    return AttachmentRecord(row[0], row[1], row[2], row[3]) if row else None


async def _attachment_ids(conn: Conn) -> set[str]:
    return {r[0] for r in await conn.fetch("SELECT attachment_id FROM attachments")}


async def _take_expired_attachments(conn: Conn, now: int) -> list[str]:
    # One statement: when several nodes sweep at once, each expired row goes to one of them.
    rows = await conn.fetch(
        "DELETE FROM attachments WHERE expires_at <= $1 RETURNING attachment_id", now
    )
    return [r[0] for r in rows]


async def _purge_expired(conn: Conn, now: int, idempotency_cutoff: int) -> None:
    await conn.execute("DELETE FROM challenges WHERE expires_at <= $1", now)
    await conn.execute("DELETE FROM tokens WHERE expires_at <= $1", now)
    await conn.execute("DELETE FROM links WHERE expires_at <= $1", now)
    await conn.execute("DELETE FROM invites WHERE expires_at <= $1", now)
    await conn.execute("DELETE FROM sent WHERE created_at < $1", idempotency_cutoff)


# --- franking, reports, blocks --------------------------------------------------------------


async def _read_franking_keys(conn: Conn) -> FrankingKeys | None:
    signing_key = await conn.fetchval("SELECT signing_key FROM franking_signer WHERE id = 1")
    if signing_key is None:
        return None
    rows = await conn.fetch(
        "SELECT key_id, hmac_key, created_at_ms, retired_at_ms FROM franking_keys ORDER BY key_id"
    )
    keys = tuple(
        FrankingKeyRecord(int(r[0]), bytes(r[1]), int(r[2]), None if r[3] is None else int(r[3]))
        for r in rows
    )
    return FrankingKeys(bytes(signing_key), keys)


async def _insert_franking_key(conn: Conn, k: FrankingKeyRecord) -> None:
    await conn.execute(
        "INSERT INTO franking_keys (key_id, hmac_key, created_at_ms, retired_at_ms) "
        "VALUES ($1, $2, $3, $4)",
        k.key_id,
        k.key,
        k.created_at_ms,
        k.retired_at_ms,
    )


async def _franking_keys(conn: Conn, initial: FrankingKeys) -> FrankingKeys:
    # Processes starting together: the signer row's primary key lets one insert; the others
    # wait for it, insert nothing, and read the winner's keys.
    if await conn.fetchval(
        "INSERT INTO franking_signer (id, signing_key) VALUES (1, $1) "
        "ON CONFLICT DO NOTHING RETURNING true",
        initial.signing_key,
    ):
        for k in initial.keys:
            await _insert_franking_key(conn, k)
        return initial
    stored = await _read_franking_keys(conn)
    assert stored is not None
    return stored


async def _rotate_franking_key(conn: Conn, current_key_id: int, new_key: FrankingKeyRecord) -> bool:
    # Conditional retire of the current key: of two processes rotating at once, the second
    # waits for the first's row lock, then finds the key retired and changes nothing.
    if not await conn.fetchval(
        "UPDATE franking_keys SET retired_at_ms = $2 WHERE key_id = $1 AND retired_at_ms IS NULL "
        "AND key_id = (SELECT MAX(key_id) FROM franking_keys) RETURNING true",
        current_key_id,
        new_key.created_at_ms,
    ):
        return False
    await _insert_franking_key(conn, new_key)
    return True


async def _delete_franking_keys(conn: Conn, key_ids: list[int]) -> int:
    rows = await conn.fetch(
        "DELETE FROM franking_keys WHERE key_id = ANY($1::bigint[]) "
        "AND retired_at_ms IS NOT NULL RETURNING key_id",
        key_ids,
    )
    return len(rows)


_REPORT_COLUMNS = (
    "reporter_username, reporter_device_id, sender_username, sender_device_id, group_id, "
    "server_seq, reason, report, attachments, created_at"
)


async def _add_report(conn: Conn, r: ReportRecord) -> int:
    report_id = await conn.fetchval(
        f"INSERT INTO reports ({_REPORT_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING report_id",
        r.reporter_username,
        r.reporter_device_id,
        r.sender_username,
        r.sender_device_id,
        r.group_id,
        r.server_seq,
        r.reason,
        r.report,
        ",".join(r.attachments),
        r.created_at,
    )
    return int(report_id)


async def _list_reports(conn: Conn, after_id: int, limit: int) -> list[ReportRecord]:
    rows = await conn.fetch(
        f"SELECT report_id, {_REPORT_COLUMNS} FROM reports WHERE report_id > $1 "
        "ORDER BY report_id LIMIT $2",
        after_id,
        limit,
    )
    return [
        ReportRecord(
            report_id=int(r[0]),
            reporter_username=r[1],
            reporter_device_id=r[2],
            sender_username=r[3],
            sender_device_id=r[4],
            group_id=bytes(r[5]),
            server_seq=int(r[6]),
            reason=r[7],
            report=bytes(r[8]),
            attachments=tuple(a for a in str(r[9]).split(",") if a),
            created_at=int(r[10]),
        )
        for r in rows
    ]


async def _delete_reports(conn: Conn, report_ids: list[int]) -> int:
    rows = await conn.fetch(
        "DELETE FROM reports WHERE report_id = ANY($1::bigint[]) RETURNING report_id", report_ids
    )
    return len(rows)


async def _set_block(conn: Conn, blocker: str, blocked: str, block: bool, now: int) -> None:
    if block:
        await conn.execute(
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (blocker, blocked) DO NOTHING",
            blocker,
            blocked,
            now,
        )
    else:
        await conn.execute(
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2", blocker, blocked
        )


async def _list_blocks(conn: Conn, blocker: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked", blocker
    )
    return [str(r[0]) for r in rows]


async def _blocking_devices(conn: Conn, sender: str, device_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT d.device_id FROM devices d JOIN blocks b ON b.blocker = d.username "
        "WHERE b.blocked = $1 AND d.device_id = ANY($2::text[])",
        sender,
        device_ids,
    )
    return {str(r[0]) for r in rows}


# --- key transparency -----------------------------------------------------------------------

_KT_VERSION_COLUMNS = "label, version, value, opening, search_key, commitment, log_index"


def _kt_version(row: asyncpg.Record) -> KtVersion:
    return KtVersion(
        label=bytes(row[0]),
        version=int(row[1]),
        value=bytes(row[2]),
        opening=bytes(row[3]),
        search_key=bytes(row[4]),
        commitment=bytes(row[5]),
        log_index=None if row[6] is None else int(row[6]),
    )


async def _insert_kt_version(conn: Conn, v: KtVersion) -> None:
    """Store a pending version; it must be the label's next one (no gap, no overwrite).

    Two processes adding the same next version race on the primary key: the second insert
    waits for the first transaction and, once it commits, inserts nothing (KtConflict), so a
    label's versions never fork.
    """
    latest = await conn.fetchval("SELECT MAX(version) FROM kt_versions WHERE label = $1", v.label)
    if v.version != (-1 if latest is None else int(latest)) + 1:
        raise KtConflict("this version of the label is taken: re-read the label and retry")
    inserted = await conn.fetchval(
        f"INSERT INTO kt_versions ({_KT_VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL) "
        "ON CONFLICT DO NOTHING RETURNING true",
        v.label,
        v.version,
        v.value,
        v.opening,
        v.search_key,
        v.commitment,
    )
    if not inserted:
        raise KtConflict("this label version or search key is already taken")


async def _kt_signing_seed(conn: Conn) -> bytes:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('kt_log_seed', $1) ON CONFLICT (key) DO NOTHING",
        secrets.token_hex(32),
    )
    return bytes.fromhex(
        str(await conn.fetchval("SELECT value FROM meta WHERE key = 'kt_log_seed'"))
    )


async def _kt_latest_version(conn: Conn, label: bytes) -> KtVersion | None:
    row = await conn.fetchrow(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE label = $1 "
        "ORDER BY version DESC LIMIT 1",
        label,
    )
    return _kt_version(row) if row else None


async def _kt_versions(conn: Conn, label: bytes, start: int) -> list[KtVersion]:
    rows = await conn.fetch(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE label = $1 AND version >= $2 "
        "ORDER BY version",
        label,
        start,
    )
    return [_kt_version(r) for r in rows]


async def _kt_pending(conn: Conn) -> list[KtVersion]:
    rows = await conn.fetch(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE log_index IS NULL ORDER BY search_key"
    )
    return [_kt_version(r) for r in rows]


async def _kt_append(conn: Conn, e: KtLogEntry) -> None:
    # The log only grows by its next index: two processes appending the same index race on
    # the primary key (the second finds it taken); an index past the committed size is
    # refused, so no gap can appear. Versions are marked by a conditional update (pending
    # only), re-checked against the newest row under READ COMMITTED.
    size = await conn.fetchval("SELECT COUNT(*) FROM kt_log")
    if e.index != int(size):
        raise KtConflict(f"log entry {e.index} is not the next one ({size})")
    if not await conn.fetchval(
        "INSERT INTO kt_log (idx, timestamp_ms, prefix_root, checkpoint) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        e.index,
        e.timestamp,
        e.prefix_root,
        e.checkpoint,
    ):
        raise KtConflict(f"log entry {e.index} is taken")
    for search_key, commitment in e.added:
        if not await conn.fetchval(
            "UPDATE kt_versions SET log_index = $1 WHERE search_key = $2 AND commitment = $3 "
            "AND log_index IS NULL RETURNING true",
            e.index,
            search_key,
            commitment,
        ):
            raise KtConflict("a version to log is not pending")


async def _kt_entries(conn: Conn, start: int, limit: int) -> list[KtLogEntry]:
    rows = await conn.fetch(
        "SELECT idx, timestamp_ms, prefix_root, checkpoint FROM kt_log WHERE idx >= $1 "
        "ORDER BY idx LIMIT $2",
        start,
        limit,
    )
    if not rows:
        return []
    added: dict[int, list[tuple[bytes, bytes]]] = {int(r[0]): [] for r in rows}
    for index, key, commitment in await conn.fetch(
        "SELECT log_index, search_key, commitment FROM kt_versions "
        "WHERE log_index BETWEEN $1 AND $2 ORDER BY log_index, search_key",
        int(rows[0][0]),
        int(rows[-1][0]),
    ):
        added[int(index)].append((bytes(key), bytes(commitment)))
    return [
        KtLogEntry(
            index=int(r[0]),
            timestamp=int(r[1]),
            prefix_root=bytes(r[2]),
            checkpoint=bytes(r[3]),
            added=tuple(added[int(r[0])]),
        )
        for r in rows
    ]


async def _kt_add_cosignature(conn: Conn, size: int, witness: str, line: str, now: int) -> None:
    # Only the newest cosignature of each witness is ever served.
    await conn.execute(
        "DELETE FROM kt_cosignatures WHERE witness = $1 AND size < $2", witness, size
    )
    await conn.execute(
        "INSERT INTO kt_cosignatures (size, witness, signature_line, cosigned_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (size, witness) DO UPDATE SET "
        "signature_line = excluded.signature_line, cosigned_at = excluded.cosigned_at",
        size,
        witness,
        line,
        now,
    )


async def _kt_cosignatures(conn: Conn, size: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT signature_line FROM kt_cosignatures WHERE size = $1 ORDER BY witness", size
    )
    return [str(r[0]) for r in rows]
