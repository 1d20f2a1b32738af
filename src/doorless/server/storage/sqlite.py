"""The embedded store: one SQLite database in the data directory.

One connection, used by one worker thread, so transactions are serialized (a second commit for
an epoch always sees the first). WAL journal with ``synchronous=FULL``: a transaction that
returned is on disk, so a message acknowledged to its sender survives a crash (I5).
``secure_delete`` overwrites deleted rows, so acknowledged ciphertext does not linger in free
pages.

The SQL sticks to what PostgreSQL also accepts (``ON CONFLICT``, ``RETURNING``, no SQLite-only
functions) so the PostgreSQL store can share statement shapes.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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

# Versioned migrations, applied in order, each in its own transaction. Never edit a released
# one: append a new version.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE accounts (username TEXT PRIMARY KEY, created_at INTEGER NOT NULL)",
            """CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_key BLOB NOT NULL UNIQUE,
                approved_by TEXT,
                approval_signature BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                revoked_at INTEGER,
                next_seq INTEGER NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX devices_by_username ON devices (username)",
            """CREATE TABLE invites (
                code_hash BLOB PRIMARY KEY,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )""",
            """CREATE TABLE challenges (
                nonce_hash BLOB PRIMARY KEY,
                expires_at INTEGER NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_hash BLOB PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                expires_at INTEGER NOT NULL
            )""",
            "CREATE INDEX tokens_by_device ON tokens (device_id)",
            """CREATE TABLE links (
                code TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_id TEXT NOT NULL,
                device_key BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                approved_at INTEGER
            )""",
            """CREATE TABLE key_packages (
                id INTEGER PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                data BLOB NOT NULL,
                last_resort INTEGER NOT NULL
            )""",
            "CREATE INDEX key_packages_by_device ON key_packages (device_id, last_resort, id)",
            """CREATE TABLE group_epochs (
                group_id BLOB PRIMARY KEY,
                epoch INTEGER NOT NULL
            )""",
            """CREATE TABLE payloads (
                id INTEGER PRIMARY KEY,
                data BLOB NOT NULL,
                remaining INTEGER NOT NULL
            )""",
            """CREATE TABLE queue (
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                seq INTEGER NOT NULL,
                payload_id INTEGER NOT NULL REFERENCES payloads (id),
                received_at INTEGER NOT NULL,
                PRIMARY KEY (device_id, seq)
            )""",
            """CREATE TABLE sent (
                sender_device_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                digest BLOB NOT NULL,
                group_epoch INTEGER,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (sender_device_id, message_id)
            )""",
            "CREATE INDEX sent_by_age ON sent (created_at)",
            """CREATE TABLE attachments (
                attachment_id TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
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
                label BLOB NOT NULL,
                version INTEGER NOT NULL,
                value BLOB NOT NULL,
                opening BLOB NOT NULL,
                search_key BLOB NOT NULL UNIQUE,
                commitment BLOB NOT NULL,
                log_index INTEGER,
                PRIMARY KEY (label, version)
            )""",
            "CREATE INDEX kt_versions_by_entry ON kt_versions (log_index, search_key)",
            """CREATE TABLE kt_log (
                idx INTEGER PRIMARY KEY,
                timestamp_ms INTEGER NOT NULL,
                prefix_root BLOB NOT NULL,
                checkpoint BLOB NOT NULL
            )""",
            """CREATE TABLE kt_cosignatures (
                size INTEGER NOT NULL,
                witness TEXT NOT NULL,
                signature_line TEXT NOT NULL,
                cosigned_at INTEGER NOT NULL,
                PRIMARY KEY (size, witness)
            )""",
        ),
    ),
    (
        3,
        "message franking, abuse reports, blocks",
        (
            # The server's frank of an application message, fanned out with it.
            "ALTER TABLE payloads ADD COLUMN frank BLOB",
            # The server's sequence number of franked messages in each group.
            "ALTER TABLE group_epochs ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1",
            """CREATE TABLE franking_signer (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                signing_key BLOB NOT NULL
            )""",
            """CREATE TABLE franking_keys (
                key_id INTEGER PRIMARY KEY,
                hmac_key BLOB NOT NULL,
                created_at_ms INTEGER NOT NULL,
                retired_at_ms INTEGER
            )""",
            """CREATE TABLE reports (
                report_id INTEGER PRIMARY KEY,
                reporter_username TEXT NOT NULL,
                reporter_device_id TEXT NOT NULL,
                sender_username TEXT NOT NULL,
                sender_device_id TEXT NOT NULL,
                group_id BLOB NOT NULL,
                server_seq INTEGER NOT NULL,
                reason TEXT NOT NULL,
                report BLOB NOT NULL,
                attachments TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )""",
            """CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts (username),
                blocked TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )""",
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

# Stay below SQLITE_MAX_VARIABLE_NUMBER on old builds when expanding IN (...).
_CHUNK = 500


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


def _device(row: Sequence[Any]) -> DeviceRecord:
    return DeviceRecord(
        device_id=row[0],
        username=row[1],
        device_key=bytes(row[2]),
        approved_by=row[3],
        approval_signature=bytes(row[4]),
        created_at=row[5],
        revoked_at=row[6],
    )


_DEVICE_COLUMNS = (
    "device_id, username, device_key, approved_by, approval_signature, created_at, revoked_at"
)


class SQLiteStorage(Storage):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._server_id = ""

    # --- plumbing --------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None or self._conn is None:
            raise StateError("storage is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, self._conn, *args))

    async def open(self) -> None:
        if self._conn is not None:
            raise StateError("storage is already open")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorless-sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, _connect, self._path)
            self._server_id = await self._run(_migrate)
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
        return await self._run(_get_device, device_id)

    async def list_devices(self, username: str) -> list[DeviceRecord] | None:
        return await self._run(_list_devices, username)

    async def revoke_device(self, device_id: str, now: int, kt: KtVersion | None = None) -> None:
        await self._run(_revoke_device, device_id, now, kt)

    # --- authentication --------------------------------------------------------------------

    async def put_challenge(self, nonce_hash: bytes, expires_at: int) -> None:
        await self._run(_put_challenge, nonce_hash, expires_at)

    async def take_challenge(self, nonce_hash: bytes, now: int) -> bool:
        return await self._run(_take_challenge, nonce_hash, now)

    async def put_token(self, token_hash: bytes, device_id: str, expires_at: int) -> None:
        await self._run(_put_token, token_hash, device_id, expires_at)

    async def token_device(self, token_hash: bytes, now: int) -> tuple[str, int] | None:
        return await self._run(_token_device, token_hash, now)

    # --- links -----------------------------------------------------------------------------

    async def create_link(self, link: LinkRecord) -> bool:
        return await self._run(_create_link, link)

    async def get_link(self, code: str, now: int) -> LinkRecord | None:
        return await self._run(_get_link, code, now)

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
        return await self._run(_key_package_count, device_id)

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
        return await self._run(_fetch, device_id, after, limit)

    async def ack(self, device_id: str, seqs: Sequence[int]) -> int:
        return await self._run(_ack, device_id, tuple(seqs))

    async def group_epoch(self, group_id: bytes) -> int | None:
        return await self._run(_group_epoch, group_id)

    # --- attachments -----------------------------------------------------------------------

    async def add_attachment(self, record: AttachmentRecord) -> None:
        await self._run(_add_attachment, record)

    async def get_attachment(self, attachment_id: str, now: int) -> AttachmentRecord | None:
        return await self._run(_get_attachment, attachment_id, now)

    async def attachment_ids(self) -> set[str]:
        return await self._run(_attachment_ids)

    async def take_expired_attachments(self, now: int) -> list[str]:
        return await self._run(_take_expired_attachments, now)

    async def purge_expired(self, now: int, idempotency_cutoff: int) -> None:
        await self._run(_purge_expired, now, idempotency_cutoff)

    # --- franking, reports, blocks ---------------------------------------------------------

    async def franking_keys(self, initial: FrankingKeys) -> FrankingKeys:
        return await self._run(_franking_keys, initial)

    async def rotate_franking_key(self, current_key_id: int, new_key: FrankingKeyRecord) -> bool:
        return await self._run(_rotate_franking_key, current_key_id, new_key)

    async def delete_franking_keys(self, key_ids: Sequence[int]) -> int:
        return await self._run(_delete_franking_keys, tuple(key_ids))

    async def add_report(self, report: ReportRecord) -> int:
        return await self._run(_add_report, report)

    async def list_reports(self, after_id: int, limit: int) -> list[ReportRecord]:
        return await self._run(_list_reports, after_id, limit)

    async def delete_reports(self, report_ids: Sequence[int]) -> int:
        return await self._run(_delete_reports, tuple(report_ids))

    async def set_block(self, blocker: str, blocked: str, block: bool, now: int) -> None:
        await self._run(_set_block, blocker, blocked, block, now)

    async def list_blocks(self, blocker: str) -> list[str]:
        return await self._run(_list_blocks, blocker)

    async def blocking_devices(self, sender: str, device_ids: Sequence[str]) -> set[str]:
        return await self._run(_blocking_devices, sender, tuple(device_ids))

    # --- key transparency ------------------------------------------------------------------

    async def kt_signing_seed(self) -> bytes:
        return await self._run(_kt_signing_seed)

    async def kt_latest_version(self, label: bytes) -> KtVersion | None:
        return await self._run(_kt_latest_version, label)

    async def kt_versions(self, label: bytes, start: int) -> list[KtVersion]:
        return await self._run(_kt_versions, label, start)

    async def kt_pending(self) -> list[KtVersion]:
        return await self._run(_kt_pending)

    async def kt_append(self, entry: KtLogEntry) -> None:
        await self._run(_kt_append, entry)

    async def kt_entries(self, start: int, limit: int) -> list[KtLogEntry]:
        return await self._run(_kt_entries, start, limit)

    async def kt_add_cosignature(
        self, size: int, witness: str, signature_line: str, now: int
    ) -> None:
        await self._run(_kt_add_cosignature, size, witness, signature_line, now)

    async def kt_cosignatures(self, size: int) -> list[str]:
        return await self._run(_kt_cosignatures, size)


# --- the work, run on the storage thread ----------------------------------------------------


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
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
        )
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
    with _transaction(conn):
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('server_id', ?) ON CONFLICT (key) DO NOTHING",
            (secrets.token_hex(16),),
        )
        (server_id,) = conn.execute("SELECT value FROM meta WHERE key = 'server_id'").fetchone()
    return str(server_id)


def _create_invite(conn: sqlite3.Connection, code_hash: bytes, now: int, expires_at: int) -> None:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO invites (code_hash, created_at, expires_at) VALUES (?, ?, ?)",
            (code_hash, now, expires_at),
        )


def _insert_device(conn: sqlite3.Connection, d: DeviceRecord) -> None:
    exists = conn.execute(
        "SELECT 1 FROM devices WHERE device_id = ? OR device_key = ?", (d.device_id, d.device_key)
    ).fetchone()
    if exists:
        raise DeviceExists("this device key is already registered")
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            d.device_id,
            d.username,
            d.device_key,
            d.approved_by,
            d.approval_signature,
            d.created_at,
            d.revoked_at,
        ),
    )


def _create_account(
    conn: sqlite3.Connection,
    device: DeviceRecord,
    invite_code_hash: bytes | None,
    now: int,
    kt: KtVersion | None,
) -> None:
    with _transaction(conn):
        if invite_code_hash is not None:
            cur = conn.execute(
                "DELETE FROM invites WHERE code_hash = ? AND expires_at > ?",
                (invite_code_hash, now),
            )
            if cur.rowcount != 1:
                raise InviteInvalid("unknown, used or expired invite code")
        if conn.execute("SELECT 1 FROM accounts WHERE username = ?", (device.username,)).fetchone():
            raise UsernameTaken("username is taken")
        conn.execute(
            "INSERT INTO accounts (username, created_at) VALUES (?, ?)", (device.username, now)
        )
        _insert_device(conn, device)
        if kt is not None:
            _insert_kt_version(conn, kt)


def _get_device(conn: sqlite3.Connection, device_id: str) -> DeviceRecord | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,)
    ).fetchone()
    return _device(row) if row else None


def _list_devices(conn: sqlite3.Connection, username: str) -> list[DeviceRecord] | None:
    if not conn.execute("SELECT 1 FROM accounts WHERE username = ?", (username,)).fetchone():
        return None
    rows = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE username = ? ORDER BY created_at, device_id",
        (username,),
    ).fetchall()
    return [_device(r) for r in rows]


def _drop_queue_entries(conn: sqlite3.Connection, device_id: str, seqs: Sequence[int]) -> int:
    """Delete queue entries and release their payloads; returns how many existed."""
    removed = 0
    for seq in seqs:
        row = conn.execute(
            "DELETE FROM queue WHERE device_id = ? AND seq = ? RETURNING payload_id",
            (device_id, seq),
        ).fetchone()
        if row is None:
            continue
        removed += 1
        conn.execute("UPDATE payloads SET remaining = remaining - 1 WHERE id = ?", (row[0],))
        conn.execute("DELETE FROM payloads WHERE id = ? AND remaining <= 0", (row[0],))
    return removed


def _revoke_device(
    conn: sqlite3.Connection, device_id: str, now: int, kt: KtVersion | None
) -> None:
    with _transaction(conn):
        if kt is not None:
            _insert_kt_version(conn, kt)
        conn.execute(
            "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
            (now, device_id),
        )
        conn.execute("DELETE FROM tokens WHERE device_id = ?", (device_id,))
        conn.execute("DELETE FROM key_packages WHERE device_id = ?", (device_id,))
        seqs = [
            r[0] for r in conn.execute("SELECT seq FROM queue WHERE device_id = ?", (device_id,))
        ]
        _drop_queue_entries(conn, device_id, seqs)


def _put_challenge(conn: sqlite3.Connection, nonce_hash: bytes, expires_at: int) -> None:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO challenges (nonce_hash, expires_at) VALUES (?, ?)",
            (nonce_hash, expires_at),
        )


def _take_challenge(conn: sqlite3.Connection, nonce_hash: bytes, now: int) -> bool:
    with _transaction(conn):
        row = conn.execute(
            "DELETE FROM challenges WHERE nonce_hash = ? RETURNING expires_at", (nonce_hash,)
        ).fetchone()
    return row is not None and row[0] > now


def _put_token(
    conn: sqlite3.Connection, token_hash: bytes, device_id: str, expires_at: int
) -> None:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO tokens (token_hash, device_id, expires_at) VALUES (?, ?, ?)",
            (token_hash, device_id, expires_at),
        )


def _token_device(conn: sqlite3.Connection, token_hash: bytes, now: int) -> tuple[str, int] | None:
    row = conn.execute(
        "SELECT t.device_id, t.expires_at FROM tokens t JOIN devices d "
        "ON d.device_id = t.device_id "
        "WHERE t.token_hash = ? AND t.expires_at > ? AND d.revoked_at IS NULL",
        (token_hash, now),
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def _create_link(conn: sqlite3.Connection, link: LinkRecord) -> bool:
    with _transaction(conn):
        if not conn.execute(
            "SELECT 1 FROM accounts WHERE username = ?", (link.username,)
        ).fetchone():
            raise UnknownAccount("no such user")
        if conn.execute(
            "SELECT 1 FROM devices WHERE device_key = ?", (link.device_key,)
        ).fetchone():
            raise DeviceExists("this device key is already registered")
        cur = conn.execute(
            "INSERT INTO links (code, username, device_id, device_key, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING",
            (
                link.code,
                link.username,
                link.device_id,
                link.device_key,
                link.created_at,
                link.expires_at,
            ),
        )
        return cur.rowcount == 1


def _get_link(conn: sqlite3.Connection, code: str, now: int) -> LinkRecord | None:
    row = conn.execute(
        "SELECT code, username, device_id, device_key, created_at, expires_at, approved_at "
        "FROM links WHERE code = ? AND expires_at > ?",
        (code, now),
    ).fetchone()
    if row is None:
        return None
    return LinkRecord(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6])


def _approve_link(
    conn: sqlite3.Connection, code: str, device: DeviceRecord, now: int, kt: KtVersion | None
) -> None:
    with _transaction(conn):
        cur = conn.execute(
            "UPDATE links SET approved_at = ? WHERE code = ? AND expires_at > ? "
            "AND approved_at IS NULL AND username = ? AND device_id = ? AND device_key = ?",
            (now, code, now, device.username, device.device_id, device.device_key),
        )
        if cur.rowcount != 1:
            raise LinkGone("no pending link request with this code")
        _insert_device(conn, device)
        if kt is not None:
            _insert_kt_version(conn, kt)


def _key_package_count(conn: sqlite3.Connection, device_id: str) -> KeyPackageCount:
    count, last_resort = conn.execute(
        "SELECT COALESCE(SUM(1 - last_resort), 0), COALESCE(MAX(last_resort), 0) "
        "FROM key_packages WHERE device_id = ?",
        (device_id,),
    ).fetchone()
    return KeyPackageCount(int(count), bool(last_resort))


def _add_key_packages(
    conn: sqlite3.Connection,
    device_id: str,
    key_packages: tuple[bytes, ...],
    last_resort: bytes | None,
    limit: int,
) -> KeyPackageCount:
    with _transaction(conn):
        before = _key_package_count(conn, device_id)
        if before.count + len(key_packages) > limit:
            raise TooManyKeyPackages(
                f"a device may hold at most {limit} key packages ({before.count} stored)"
            )
        conn.executemany(
            "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?, ?, 0)",
            [(device_id, kp) for kp in key_packages],
        )
        if last_resort is not None:
            conn.execute(
                "DELETE FROM key_packages WHERE device_id = ? AND last_resort = 1", (device_id,)
            )
            conn.execute(
                "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?, ?, 1)",
                (device_id, last_resort),
            )
        return _key_package_count(conn, device_id)


def _claim_key_package(conn: sqlite3.Connection, device_id: str) -> ClaimedKeyPackage | None:
    with _transaction(conn):
        row = conn.execute(
            "SELECT id, data, last_resort FROM key_packages WHERE device_id = ? "
            "ORDER BY last_resort, id LIMIT 1",
            (device_id,),
        ).fetchone()
        if row is None:
            return None
        if not row[2]:  # one-time packages are consumed; the last-resort one stays
            conn.execute("DELETE FROM key_packages WHERE id = ?", (row[0],))
        return ClaimedKeyPackage(device_id, bytes(row[1]), bool(row[2]))


def _check_gate(conn: sqlite3.Connection, gate: EpochGate) -> int:
    """Apply the one-commit-per-epoch rule; returns the group's epoch after this message."""
    row = conn.execute(
        "SELECT epoch FROM group_epochs WHERE group_id = ?", (gate.group_id,)
    ).fetchone()
    after = gate.epoch + 1 if gate.is_commit else gate.epoch
    if row is None:
        # First message the server sees for this group: it fixes the starting epoch.
        conn.execute(
            "INSERT INTO group_epochs (group_id, epoch) VALUES (?, ?)", (gate.group_id, after)
        )
        return after
    current = int(row[0])
    if gate.epoch != current:
        what = "commit" if gate.is_commit else "message"
        raise EpochConflict(
            current, f"{what} is for epoch {gate.epoch}, the group is at epoch {current}"
        )
    if gate.is_commit:
        conn.execute("UPDATE group_epochs SET epoch = ? WHERE group_id = ?", (after, gate.group_id))
    return after


def _deliver(
    conn: sqlite3.Connection,
    sender: str,
    message_id: str,
    digest: bytes,
    parts: tuple[Delivery, ...],
    gate: EpochGate | None,
    now: int,
) -> DeliveryResult:
    with _transaction(conn):
        row = conn.execute(
            "SELECT digest, group_epoch FROM sent WHERE sender_device_id = ? AND message_id = ?",
            (sender, message_id),
        ).fetchone()
        if row is not None:
            if bytes(row[0]) != digest:
                raise IdempotencyConflict("message id already used for different content")
            return DeliveryResult(message_id, row[1], duplicate=True)
        group_epoch = _check_gate(conn, gate) if gate is not None else None
        wanted = sorted({r for p in parts for r in p.recipients})
        live: set[str] = set()
        for chunk in _chunks(wanted):
            marks = ", ".join("?" * len(chunk))
            live.update(
                r[0]
                for r in conn.execute(
                    f"SELECT device_id FROM devices WHERE revoked_at IS NULL "
                    f"AND device_id IN ({marks})",
                    tuple(chunk),
                )
            )
        missing = [d for d in wanted if d not in live]
        if missing:
            raise UnknownDevice(missing)
        for part in parts:
            recipients = tuple(dict.fromkeys(part.recipients))
            if not recipients:  # e.g. a commit in a one-member group: only the epoch moves
                continue
            frank = None
            if part.stamp is not None:
                assert gate is not None  # only application messages are stamped
                frank = part.stamp(_next_group_seq(conn, gate.group_id))
            (payload_id,) = conn.execute(
                "INSERT INTO payloads (data, remaining, frank) VALUES (?, ?, ?) RETURNING id",
                (part.data, len(recipients), frank),
            ).fetchone()
            for device_id in recipients:
                (seq,) = conn.execute(
                    "UPDATE devices SET next_seq = next_seq + 1 WHERE device_id = ? "
                    "RETURNING next_seq - 1",
                    (device_id,),
                ).fetchone()
                conn.execute(
                    "INSERT INTO queue (device_id, seq, payload_id, received_at) "
                    "VALUES (?, ?, ?, ?)",
                    (device_id, seq, payload_id, now),
                )
        conn.execute(
            "INSERT INTO sent (sender_device_id, message_id, digest, group_epoch, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (sender, message_id, digest, group_epoch, now),
        )
        return DeliveryResult(message_id, group_epoch, duplicate=False)


def _fetch(conn: sqlite3.Connection, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
    rows = conn.execute(
        "SELECT q.seq, p.data, q.received_at, p.frank FROM queue q "
        "JOIN payloads p ON p.id = q.payload_id "
        "WHERE q.device_id = ? AND q.seq > ? ORDER BY q.seq LIMIT ?",
        (device_id, after, limit),
    ).fetchall()
    return [
        QueuedMessage(int(r[0]), bytes(r[1]), int(r[2]), None if r[3] is None else bytes(r[3]))
        for r in rows
    ]


def _ack(conn: sqlite3.Connection, device_id: str, seqs: tuple[int, ...]) -> int:
    with _transaction(conn):
        return _drop_queue_entries(conn, device_id, seqs)


def _group_epoch(conn: sqlite3.Connection, group_id: bytes) -> int | None:
    row = conn.execute("SELECT epoch FROM group_epochs WHERE group_id = ?", (group_id,)).fetchone()
    return int(row[0]) if row else None


def _add_attachment(conn: sqlite3.Connection, a: AttachmentRecord) -> None:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO attachments (attachment_id, size, created_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            (a.attachment_id, a.size, a.created_at, a.expires_at),
        )


def _get_attachment(
    conn: sqlite3.Connection, attachment_id: str, now: int
) -> AttachmentRecord | None:
    row = conn.execute(
        "SELECT attachment_id, size, created_at, expires_at FROM attachments "
        "WHERE attachment_id = ? AND expires_at > ?",
        (attachment_id, now),
    ).fetchone()
    return AttachmentRecord(row[0], row[1], row[2], row[3]) if row else None


def _attachment_ids(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT attachment_id FROM attachments")}


def _take_expired_attachments(conn: sqlite3.Connection, now: int) -> list[str]:
    with _transaction(conn):
        return [
            r[0]
            for r in conn.execute(
                "DELETE FROM attachments WHERE expires_at <= ? RETURNING attachment_id", (now,)
            ).fetchall()
        ]


def _purge_expired(conn: sqlite3.Connection, now: int, idempotency_cutoff: int) -> None:
    with _transaction(conn):
        conn.execute("DELETE FROM challenges WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM links WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM invites WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM sent WHERE created_at < ?", (idempotency_cutoff,))


# --- franking, reports, blocks --------------------------------------------------------------


def _next_group_seq(conn: sqlite3.Connection, group_id: bytes) -> int:
    (seq,) = conn.execute(
        "UPDATE group_epochs SET next_seq = next_seq + 1 WHERE group_id = ? RETURNING next_seq - 1",
        (group_id,),
    ).fetchone()
    return int(seq)


def _read_franking_keys(conn: sqlite3.Connection) -> FrankingKeys | None:
    row = conn.execute("SELECT signing_key FROM franking_signer WHERE id = 1").fetchone()
    if row is None:
        return None
    keys = tuple(
        FrankingKeyRecord(int(r[0]), bytes(r[1]), int(r[2]), None if r[3] is None else int(r[3]))
        for r in conn.execute(
            "SELECT key_id, hmac_key, created_at_ms, retired_at_ms FROM franking_keys "
            "ORDER BY key_id"
        )
    )
    return FrankingKeys(bytes(row[0]), keys)


def _insert_franking_key(conn: sqlite3.Connection, k: FrankingKeyRecord) -> None:
    conn.execute(
        "INSERT INTO franking_keys (key_id, hmac_key, created_at_ms, retired_at_ms) "
        "VALUES (?, ?, ?, ?)",
        (k.key_id, k.key, k.created_at_ms, k.retired_at_ms),
    )


def _franking_keys(conn: sqlite3.Connection, initial: FrankingKeys) -> FrankingKeys:
    with _transaction(conn):
        stored = _read_franking_keys(conn)
        if stored is not None:
            return stored
        conn.execute(
            "INSERT INTO franking_signer (id, signing_key) VALUES (1, ?)", (initial.signing_key,)
        )
        for k in initial.keys:
            _insert_franking_key(conn, k)
        return initial


def _rotate_franking_key(
    conn: sqlite3.Connection, current_key_id: int, new_key: FrankingKeyRecord
) -> bool:
    with _transaction(conn):
        (newest,) = conn.execute("SELECT MAX(key_id) FROM franking_keys").fetchone()
        if newest is None or int(newest) != current_key_id:
            return False
        conn.execute(
            "UPDATE franking_keys SET retired_at_ms = ? WHERE key_id = ?",
            (new_key.created_at_ms, current_key_id),
        )
        _insert_franking_key(conn, new_key)
        return True


def _delete_franking_keys(conn: sqlite3.Connection, key_ids: tuple[int, ...]) -> int:
    with _transaction(conn):
        deleted = 0
        for key_id in key_ids:
            cur = conn.execute(
                "DELETE FROM franking_keys WHERE key_id = ? AND retired_at_ms IS NOT NULL",
                (key_id,),
            )
            deleted += cur.rowcount
        return deleted


_REPORT_COLUMNS = (
    "reporter_username, reporter_device_id, sender_username, sender_device_id, group_id, "
    "server_seq, reason, report, attachments, created_at"
)


def _add_report(conn: sqlite3.Connection, r: ReportRecord) -> int:
    with _transaction(conn):
        (report_id,) = conn.execute(
            f"INSERT INTO reports ({_REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING report_id",
            (
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
            ),
        ).fetchone()
        return int(report_id)


def _list_reports(conn: sqlite3.Connection, after_id: int, limit: int) -> list[ReportRecord]:
    rows = conn.execute(
        f"SELECT report_id, {_REPORT_COLUMNS} FROM reports WHERE report_id > ? "
        "ORDER BY report_id LIMIT ?",
        (after_id, limit),
    ).fetchall()
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


def _delete_reports(conn: sqlite3.Connection, report_ids: tuple[int, ...]) -> int:
    with _transaction(conn):
        deleted = 0
        for report_id in report_ids:
            deleted += conn.execute(
                "DELETE FROM reports WHERE report_id = ?", (report_id,)
            ).rowcount
    # secure_delete zeroed the rows; the WAL still holds older images of their pages (with
    # the reported plaintext) until a checkpoint: truncate it (best effort under readers).
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return deleted


def _set_block(conn: sqlite3.Connection, blocker: str, blocked: str, block: bool, now: int) -> None:
    with _transaction(conn):
        if block:
            conn.execute(
                "INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (blocker, blocked) DO NOTHING",
                (blocker, blocked, now),
            )
        else:
            conn.execute("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked))


def _list_blocks(conn: sqlite3.Connection, blocker: str) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT blocked FROM blocks WHERE blocker = ? ORDER BY blocked", (blocker,)
        )
    ]


def _blocking_devices(
    conn: sqlite3.Connection, sender: str, device_ids: tuple[str, ...]
) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(device_ids):
        marks = ", ".join("?" * len(chunk))
        found.update(
            str(r[0])
            for r in conn.execute(
                f"SELECT d.device_id FROM devices d JOIN blocks b ON b.blocker = d.username "
                f"WHERE b.blocked = ? AND d.device_id IN ({marks})",
                (sender, *chunk),
            )
        )
    return found


# --- key transparency -----------------------------------------------------------------------

_KT_VERSION_COLUMNS = "label, version, value, opening, search_key, commitment, log_index"


def _kt_version(row: Sequence[Any]) -> KtVersion:
    return KtVersion(
        label=bytes(row[0]),
        version=int(row[1]),
        value=bytes(row[2]),
        opening=bytes(row[3]),
        search_key=bytes(row[4]),
        commitment=bytes(row[5]),
        log_index=None if row[6] is None else int(row[6]),
    )


def _insert_kt_version(conn: sqlite3.Connection, v: KtVersion) -> None:
    """Store a pending version; it must be the label's next one (no gap, no overwrite)."""
    (latest,) = conn.execute(
        "SELECT MAX(version) FROM kt_versions WHERE label = ?", (v.label,)
    ).fetchone()
    if v.version != (-1 if latest is None else int(latest)) + 1:
        raise KtConflict("this version of the label is taken: re-read the label and retry")
    if conn.execute("SELECT 1 FROM kt_versions WHERE search_key = ?", (v.search_key,)).fetchone():
        raise KtConflict("this search key is already in the log")
    conn.execute(
        f"INSERT INTO kt_versions ({_KT_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        (v.label, v.version, v.value, v.opening, v.search_key, v.commitment),
    )


def _kt_signing_seed(conn: sqlite3.Connection) -> bytes:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('kt_log_seed', ?) ON CONFLICT (key) DO NOTHING",
            (secrets.token_hex(32),),
        )
        (seed,) = conn.execute("SELECT value FROM meta WHERE key = 'kt_log_seed'").fetchone()
    return bytes.fromhex(str(seed))


def _kt_latest_version(conn: sqlite3.Connection, label: bytes) -> KtVersion | None:
    row = conn.execute(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE label = ? "
        "ORDER BY version DESC LIMIT 1",
        (label,),
    ).fetchone()
    return _kt_version(row) if row else None


def _kt_versions(conn: sqlite3.Connection, label: bytes, start: int) -> list[KtVersion]:
    rows = conn.execute(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE label = ? AND version >= ? "
        "ORDER BY version",
        (label, start),
    ).fetchall()
    return [_kt_version(r) for r in rows]


def _kt_pending(conn: sqlite3.Connection) -> list[KtVersion]:
    rows = conn.execute(
        f"SELECT {_KT_VERSION_COLUMNS} FROM kt_versions WHERE log_index IS NULL ORDER BY search_key"
    ).fetchall()
    return [_kt_version(r) for r in rows]


def _kt_append(conn: sqlite3.Connection, e: KtLogEntry) -> None:
    with _transaction(conn):
        (size,) = conn.execute("SELECT COUNT(*) FROM kt_log").fetchone()
        if e.index != int(size):
            raise KtConflict(f"log entry {e.index} is not the next one ({size})")
        conn.execute(
            "INSERT INTO kt_log (idx, timestamp_ms, prefix_root, checkpoint) VALUES (?, ?, ?, ?)",
            (e.index, e.timestamp, e.prefix_root, e.checkpoint),
        )
        for search_key, commitment in e.added:
            cur = conn.execute(
                "UPDATE kt_versions SET log_index = ? WHERE search_key = ? AND commitment = ? "
                "AND log_index IS NULL",
                (e.index, search_key, commitment),
            )
            if cur.rowcount != 1:
                raise KtConflict("a version to log is not pending")


def _kt_entries(conn: sqlite3.Connection, start: int, limit: int) -> list[KtLogEntry]:
    rows = conn.execute(
        "SELECT idx, timestamp_ms, prefix_root, checkpoint FROM kt_log WHERE idx >= ? "
        "ORDER BY idx LIMIT ?",
        (start, limit),
    ).fetchall()
    if not rows:
        return []
    added: dict[int, list[tuple[bytes, bytes]]] = {int(r[0]): [] for r in rows}
    for index, key, commitment in conn.execute(
        "SELECT log_index, search_key, commitment FROM kt_versions "
        "WHERE log_index BETWEEN ? AND ? ORDER BY log_index, search_key",
        (int(rows[0][0]), int(rows[-1][0])),
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


def _kt_add_cosignature(
    conn: sqlite3.Connection, size: int, witness: str, line: str, now: int
) -> None:
    with _transaction(conn):
        # Only the newest cosignature of each witness is ever served.
        conn.execute("DELETE FROM kt_cosignatures WHERE witness = ? AND size < ?", (witness, size))
        conn.execute(
            "INSERT INTO kt_cosignatures (size, witness, signature_line, cosigned_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (size, witness) DO UPDATE SET "
            "signature_line = excluded.signature_line, cosigned_at = excluded.cosigned_at",
            (size, witness, line, now),
        )


def _kt_cosignatures(conn: sqlite3.Connection, size: int) -> list[str]:
    rows = conn.execute(
        "SELECT signature_line FROM kt_cosignatures WHERE size = ? ORDER BY witness", (size,)
    ).fetchall()
    return [str(r[0]) for r in rows]
