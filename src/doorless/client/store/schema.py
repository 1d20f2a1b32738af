"""The database schema: its migrations (one transaction each, `migrate`), and how table rows
become the record values of `doorless.client.store.rows`."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TypeVar

import sqlcipher3

from doorless.client.keys import ProfileCorrupt
from doorless.client.store.errors import StoreError
from doorless.client.store.rich import RICH_MIGRATION
from doorless.client.store.rows import (
    Contact,
    DeviceStatus,
    Group,
    GroupStatus,
    Message,
    MessageState,
    OutboxItem,
    OwnDevice,
    StoredKeyPackage,
)
from doorless.secret import PrivateKeyBytes

E = TypeVar("E", bound=StrEnum)

# The text the search index holds for a message body: its UTF-8 text, with the two control
# characters that mark matches in search snippets turned into spaces (separators for FTS5's
# unicode61 tokenizer, so the tokens do not change).
SEARCH_TEXT = "replace(replace(CAST({body} AS TEXT), char(2), ' '), char(3), ' ')"

# Migration n (1-based) brings the schema from version n-1 to n; PRAGMA user_version holds the
# version. Append new migrations, never edit an old one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE account (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            username TEXT NOT NULL,
            server_url TEXT NOT NULL,
            device_id TEXT NOT NULL,
            cipher_suite INTEGER NOT NULL,
            signature_private_key BLOB NOT NULL,
            signature_public_key BLOB NOT NULL,
            credential BLOB NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            signature_public_key BLOB NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            first_seen_at INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE contacts (
            username TEXT PRIMARY KEY,
            display_name TEXT,
            verified INTEGER NOT NULL,
            blocked INTEGER NOT NULL,
            accepted INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE contact_devices (
            username TEXT NOT NULL REFERENCES contacts(username) ON DELETE CASCADE,
            device_id TEXT NOT NULL,
            signature_public_key BLOB NOT NULL,
            verified_at INTEGER NOT NULL,
            PRIMARY KEY (username, device_id)
        ) STRICT""",
        """CREATE TABLE mls_groups (
            group_id BLOB PRIMARY KEY,
            name TEXT NOT NULL,
            mls_state BLOB NOT NULL,
            epoch INTEGER NOT NULL,
            disappearing_timer_ms INTEGER,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT""",
        # AUTOINCREMENT: a local id is never reused after a message is deleted.
        """CREATE TABLE messages (
            local_id INTEGER PRIMARY KEY AUTOINCREMENT,
            server_id TEXT UNIQUE,
            group_id BLOB NOT NULL REFERENCES mls_groups(group_id) ON DELETE CASCADE,
            sender_user TEXT NOT NULL,
            sender_device TEXT NOT NULL,
            outgoing INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            body BLOB NOT NULL,
            sent_at INTEGER NOT NULL,
            received_at INTEGER,
            expires_at INTEGER,
            state TEXT NOT NULL,
            franking BLOB
        ) STRICT""",
        "CREATE INDEX messages_by_group ON messages(group_id, local_id)",
        "CREATE INDEX messages_by_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE processed (
            server_id TEXT PRIMARY KEY,
            processed_at INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE outbox (
            outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id BLOB REFERENCES mls_groups(group_id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            message_local_id INTEGER REFERENCES messages(local_id) ON DELETE SET NULL,
            created_at INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT
        ) STRICT""",
        "CREATE INDEX outbox_due ON outbox(next_attempt_at)",
        """CREATE TABLE key_packages (
            ref BLOB PRIMARY KEY,
            key_package BLOB NOT NULL,
            init_private_key BLOB NOT NULL,
            encryption_private_key BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            last_resort INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE kt_checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            tree_size INTEGER NOT NULL,
            root_hash BLOB NOT NULL,
            signed_tree_head BLOB NOT NULL,
            verified_at INTEGER NOT NULL
        ) STRICT""",
    ),
    (
        # Message requests: a conversation someone this user has not accepted added them to
        # (doorless.client.safety). The row goes when the request is accepted.
        """CREATE TABLE message_requests (
            group_id BLOB PRIMARY KEY REFERENCES mls_groups(group_id) ON DELETE CASCADE,
            inviter TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT""",
    ),
    (
        # Full-text search over the text messages (doorless.client.store.search). The index is
        # an FTS5 external-content table over a view of the text rows, so the body is stored
        # once (in messages); triggers keep it in step with every insert, edit and delete of a
        # message row, whoever makes it. FTS5 separators replace the snippet markers (STX,
        # ETX) in the view, which keeps the view's tokens those of the index.
        f"""CREATE VIEW message_text (local_id, body) AS
            SELECT local_id, {SEARCH_TEXT.format(body="body")} FROM messages
            WHERE content_type = 'text'""",
        """CREATE VIRTUAL TABLE message_search USING fts5 (
            body, content = 'message_text', content_rowid = 'local_id',
            tokenize = 'unicode61 remove_diacritics 2'
        )""",
        # A deleted message's terms leave the index's pages at once instead of lingering in
        # an older segment until a merge (FTS5 'secure-delete', SQLite 3.42); the store's
        # secure_delete pragma then overwrites the freed space.
        "INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1)",
        f"""CREATE TRIGGER message_search_insert AFTER INSERT ON messages
            WHEN new.content_type = 'text' BEGIN
                INSERT INTO message_search (rowid, body)
                VALUES (new.local_id, {SEARCH_TEXT.format(body="new.body")});
            END""",
        f"""CREATE TRIGGER message_search_delete AFTER DELETE ON messages
            WHEN old.content_type = 'text' BEGIN
                INSERT INTO message_search (message_search, rowid, body)
                VALUES ('delete', old.local_id, {SEARCH_TEXT.format(body="old.body")});
            END""",
        # One trigger, its two steps in order (SQLite runs several triggers of one event
        # newest first): the old text out of the index, then the new one in.
        f"""CREATE TRIGGER message_search_update AFTER UPDATE OF local_id, content_type, body
            ON messages BEGIN
                INSERT INTO message_search (message_search, rowid, body)
                SELECT 'delete', old.local_id, {SEARCH_TEXT.format(body="old.body")}
                WHERE old.content_type = 'text';
                INSERT INTO message_search (rowid, body)
                SELECT new.local_id, {SEARCH_TEXT.format(body="new.body")}
                WHERE new.content_type = 'text';
            END""",
        # The messages stored before this version.
        "INSERT INTO message_search (message_search) VALUES ('rebuild')",
    ),
    (
        # History handed over by another device of the account when this one was linked
        # (doorless.client.handoff): shown as transferred.
        "ALTER TABLE messages ADD COLUMN transferred INTEGER NOT NULL DEFAULT 0",
    ),
    # Rich messages (MIMI content): metadata, edit history, reactions, read receipts, and
    # the payloads of outgoing messages not yet sent (doorless.client.store.rich).
    RICH_MIGRATION,
)
SCHEMA_VERSION = len(MIGRATIONS)

MESSAGE_COLUMNS = (
    "local_id, server_id, group_id, sender_user, sender_device, outgoing, content_type, body, "
    "sent_at, received_at, expires_at, state, franking, transferred"
)
OUTBOX_COLUMNS = (
    "outbox_id, group_id, kind, payload, message_local_id, created_at, next_attempt_at, "
    "attempts, last_error"
)


def enum_of(cls: type[E], value: Any) -> E:
    try:
        return cls(value)
    except ValueError:
        raise ProfileCorrupt(f"unknown {cls.__name__} {value!r} in the store") from None


def message_row(row: Sequence[Any]) -> Message:
    return Message(
        local_id=row[0],
        server_id=row[1],
        group_id=row[2],
        sender_user=row[3],
        sender_device=row[4],
        outgoing=bool(row[5]),
        content_type=row[6],
        body=row[7],
        sent_at=row[8],
        received_at=row[9],
        expires_at=row[10],
        state=enum_of(MessageState, row[11]),
        franking=row[12],
        transferred=bool(row[13]),
    )


def outbox_row(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        outbox_id=row[0],
        group_id=row[1],
        kind=row[2],
        payload=row[3],
        message_local_id=row[4],
        created_at=row[5],
        next_attempt_at=row[6],
        attempts=row[7],
        last_error=row[8],
    )


def group_row(row: Sequence[Any]) -> Group:
    return Group(
        group_id=row[0],
        name=row[1],
        mls_state=row[2],
        epoch=row[3],
        disappearing_timer_ms=row[4],
        status=enum_of(GroupStatus, row[5]),
        created_at=row[6],
        updated_at=row[7],
    )


def contact_row(row: Sequence[Any]) -> Contact:
    return Contact(
        username=row[0],
        display_name=row[1],
        verified=bool(row[2]),
        blocked=bool(row[3]),
        accepted=bool(row[4]),
        created_at=row[5],
        updated_at=row[6],
    )


def device_row(row: Sequence[Any]) -> OwnDevice:
    return OwnDevice(
        device_id=row[0],
        signature_public_key=row[1],
        name=row[2],
        status=enum_of(DeviceStatus, row[3]),
        first_seen_at=row[4],
    )


def key_package_row(row: Sequence[Any]) -> StoredKeyPackage:
    return StoredKeyPackage(
        ref=row[0],
        key_package=row[1],
        init_private_key=PrivateKeyBytes(row[2]),
        encryption_private_key=PrivateKeyBytes(row[3]),
        created_at=row[4],
        last_resort=bool(row[5]),
    )


def migrate(conn: Any) -> int:
    """Bring the schema to `SCHEMA_VERSION`, one transaction per migration."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {version}, newer than this Doorless "
            f"({SCHEMA_VERSION}); upgrade Doorless"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except sqlcipher3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"schema migration to version {target} failed: {e}") from e
        version = target
    return version


__all__ = [
    "MESSAGE_COLUMNS",
    "MIGRATIONS",
    "OUTBOX_COLUMNS",
    "SCHEMA_VERSION",
    "SEARCH_TEXT",
    "contact_row",
    "device_row",
    "enum_of",
    "group_row",
    "key_package_row",
    "message_row",
    "migrate",
    "outbox_row",
]
