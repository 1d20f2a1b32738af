"""The tables, once: versioned migrations written with a dialect type map.

Owns the schema of both stores. Each migration is a list of statements in which column types
are placeholders (``{int}``, ``{blob}``, ``{serial}``, ``{bool}``) that `render` replaces with
the dialect's type; a statement only one dialect needs is wrapped in `Only`. The rendered text
is exactly what `SQLiteStorage` and `PostgresStorage` applied before they shared it, so a
database created by earlier code opens, migrates by the same version numbers, and ends with
the same schema.

Never edit a released migration: append a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

# How each type placeholder is spelled. ``serial``: an auto-assigned 64-bit key (SQLite's
# ``INTEGER PRIMARY KEY`` is the rowid); ``bool``: SQLite stores 0/1.
TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"int": "INTEGER", "blob": "BLOB", "serial": "INTEGER", "bool": "INTEGER"},
    "postgres": {"int": "BIGINT", "blob": "BYTEA", "serial": "BIGSERIAL", "bool": "BOOLEAN"},
}


@dataclass(frozen=True, slots=True)
class Only:
    """A statement of one dialect only (storage tuning, an index the other does not need)."""

    dialect: Dialect
    sql: str


Statement = str | Only

_MIGRATIONS: tuple[tuple[int, str, tuple[Statement, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE accounts (username TEXT PRIMARY KEY, created_at {int} NOT NULL)",
            """CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_key {blob} NOT NULL UNIQUE,
                approved_by TEXT,
                approval_signature {blob} NOT NULL,
                created_at {int} NOT NULL,
                revoked_at {int},
                next_seq {int} NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX devices_by_username ON devices (username)",
            """CREATE TABLE invites (
                code_hash {blob} PRIMARY KEY,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL
            )""",
            """CREATE TABLE challenges (
                nonce_hash {blob} PRIMARY KEY,
                expires_at {int} NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_hash {blob} PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                expires_at {int} NOT NULL
            )""",
            "CREATE INDEX tokens_by_device ON tokens (device_id)",
            """CREATE TABLE links (
                code TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_id TEXT NOT NULL,
                device_key {blob} NOT NULL,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL,
                approved_at {int}
            )""",
            """CREATE TABLE key_packages (
                id {serial} PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                data {blob} NOT NULL,
                last_resort {bool} NOT NULL
            )""",
            "CREATE INDEX key_packages_by_device ON key_packages (device_id, last_resort, id)",
            """CREATE TABLE group_epochs (
                group_id {blob} PRIMARY KEY,
                epoch {int} NOT NULL
            )""",
            """CREATE TABLE payloads (
                id {serial} PRIMARY KEY,
                data {blob} NOT NULL,
                remaining INTEGER NOT NULL
            )""",
            # Ciphertext does not compress: do not spend CPU trying.
            Only("postgres", "ALTER TABLE payloads ALTER COLUMN data SET STORAGE EXTERNAL"),
            """CREATE TABLE queue (
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                seq {int} NOT NULL,
                payload_id {int} NOT NULL REFERENCES payloads (id),
                received_at {int} NOT NULL,
                PRIMARY KEY (device_id, seq)
            )""",
            Only("postgres", "CREATE INDEX queue_by_payload ON queue (payload_id)"),
            """CREATE TABLE sent (
                sender_device_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                digest {blob} NOT NULL,
                group_epoch {int},
                created_at {int} NOT NULL,
                PRIMARY KEY (sender_device_id, message_id)
            )""",
            "CREATE INDEX sent_by_age ON sent (created_at)",
            """CREATE TABLE attachments (
                attachment_id TEXT PRIMARY KEY,
                size {int} NOT NULL,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL
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
                label {blob} NOT NULL,
                version {int} NOT NULL,
                value {blob} NOT NULL,
                opening {blob} NOT NULL,
                search_key {blob} NOT NULL UNIQUE,
                commitment {blob} NOT NULL,
                log_index {int},
                PRIMARY KEY (label, version)
            )""",
            "CREATE INDEX kt_versions_by_entry ON kt_versions (log_index, search_key)",
            """CREATE TABLE kt_log (
                idx {int} PRIMARY KEY,
                timestamp_ms {int} NOT NULL,
                prefix_root {blob} NOT NULL,
                checkpoint {blob} NOT NULL
            )""",
            """CREATE TABLE kt_cosignatures (
                size {int} NOT NULL,
                witness TEXT NOT NULL,
                signature_line TEXT NOT NULL,
                cosigned_at {int} NOT NULL,
                PRIMARY KEY (size, witness)
            )""",
        ),
    ),
    (
        3,
        "message franking, abuse reports, blocks",
        (
            # The server's frank of an application message, fanned out with it.
            "ALTER TABLE payloads ADD COLUMN frank {blob}",
            # The server's sequence number of franked messages in each group.
            "ALTER TABLE group_epochs ADD COLUMN next_seq {int} NOT NULL DEFAULT 1",
            """CREATE TABLE franking_signer (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                signing_key {blob} NOT NULL
            )""",
            """CREATE TABLE franking_keys (
                key_id {int} PRIMARY KEY,
                hmac_key {blob} NOT NULL,
                created_at_ms {int} NOT NULL,
                retired_at_ms {int}
            )""",
            """CREATE TABLE reports (
                report_id {serial} PRIMARY KEY,
                reporter_username TEXT NOT NULL,
                reporter_device_id TEXT NOT NULL,
                sender_username TEXT NOT NULL,
                sender_device_id TEXT NOT NULL,
                group_id {blob} NOT NULL,
                server_seq {int} NOT NULL,
                reason TEXT NOT NULL,
                report {blob} NOT NULL,
                attachments TEXT NOT NULL,
                created_at {int} NOT NULL
            )""",
            """CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts (username),
                blocked TEXT NOT NULL,
                created_at {int} NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )""",
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
        ),
    ),
    (
        4,
        "validated groups: public MLS state, latest GroupInfo, member devices",
        (
            # `doorless.server.groups`: the public state (PublicGroup.to_bytes) of each
            # registered group and the latest GroupInfo its committer signed.
            """CREATE TABLE group_states (
                group_id {blob} PRIMARY KEY,
                epoch {int} NOT NULL,
                state {blob} NOT NULL,
                group_info {blob} NOT NULL
            )""",
            # The devices of the group's leaves: who may post to it (one lookup per message).
            """CREATE TABLE group_members (
                group_id {blob} NOT NULL,
                device_id TEXT NOT NULL,
                PRIMARY KEY (group_id, device_id)
            )""",
        ),
    ),
    (
        5,
        "key packages by cipher suite (post-quantum and classic packages of one device)",
        (
            # Rows from before are suite 1, the only suite clients published then.
            "ALTER TABLE key_packages ADD COLUMN cipher_suite INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX key_packages_by_suite "
            "ON key_packages (device_id, cipher_suite, last_resort, id)",
        ),
    ),
)

SCHEMA_VERSION = _MIGRATIONS[-1][0]

# Where each store records the versions it applied (created before any migration runs).
MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
)


def render(dialect: Dialect) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """The migrations as ``(version, description, statements)`` in ``dialect``'s SQL."""
    types = TYPES[dialect]
    return tuple(
        (
            version,
            description,
            tuple(
                s.format(**types) if isinstance(s, str) else s.sql
                for s in statements
                if isinstance(s, str) or s.dialect == dialect
            ),
        )
        for version, description, statements in _MIGRATIONS
    )
