"""The client's encrypted local store: one SQLCipher database per profile folder.

Everything a client keeps — account and device keys, contacts, MLS group states, messages,
the dedupe set of processed server messages, the outbox, KeyPackage private keys, the last
verified key-transparency checkpoint and settings — lives in one SQLCipher database, so that a
single transaction can cover one whole state change (I4) and nothing is stored in clear (I6).

Profile folder (created 0700, files 0600)::

    key.json        where the key comes from (Argon2id salt and parameters, or keyring entry)
    key.json.new    only while a profile is created or its key is changed (crash recovery)
    store.db        the SQLCipher database (+ store.db-wal, store.db-shm while open)
    lock            flock()ed by the one process that has the profile open

Key
    A raw 256-bit SQLCipher key from Argon2id over a passphrase, from the OS keyring, or from
    the application (`doorless.client.keys`). A wrong key raises `WrongPassphrase` and writes
    nothing. `ProfileStore.change_key` re-encrypts into a new file and switches atomically, so
    Argon2 parameters can be raised later.

One writer
    `ProfileStore.open` takes an exclusive ``flock`` on ``lock``; a second opener (another
    process, or the same process again) gets `ProfileLocked` after ``lock_timeout`` seconds.
    The kernel drops the lock when the holder dies, so a crash never leaves a stale lock.
    (POSIX only; on a network file system flock may not exclude other machines.)

Transactions
    ``with store.transaction() as tx:`` runs ``BEGIN IMMEDIATE``; it commits when the block
    ends normally and rolls back on any exception (including cancellation), so a failed
    operation changes nothing. The MLS layer is functional: process an input, get a new group
    state, then write that state, the message and the processed mark in one transaction::

        with store.transaction() as tx:
            if not tx.mark_processed(server_id, now):
                return                      # duplicate delivery
            tx.update_group_state(group_id, new_state, new_epoch, now)
            tx.insert_message(message)

    Journal mode is WAL with ``synchronous=FULL``: a committed transaction survives a crash or
    power loss, an uncommitted one vanishes entirely (a kill -9 test checks this). Do not
    ``await`` inside a transaction block; nested transactions raise `StateError`.

Threads and asyncio (decision)
    The store API is synchronous; a call is a few SQLite statements, a commit one fsync. One
    connection serves the profile, guarded by a lock, so any thread may call it. Async code
    should use ``await store.run(fn, *args)`` or ``await store.run_transaction(fn)``, which run
    on the store's single worker thread (calls are serialised in submission order, the event
    loop never waits on an fsync). Cancelling the awaiting task does not interrupt the
    worker: the transaction still commits or rolls back as a whole.

Deletion
    ``secure_delete`` is on, so deleted rows (consumed KeyPackage keys, expired messages) are
    overwritten in the pages that held them. `ProfileStore.vacuum` rebuilds the file and
    truncates the WAL, so that no old page image of a deleted row remains either.

Timestamps are integers, Unix time in milliseconds; the caller supplies them (``now``).
Secrets and message bodies are ``repr=False`` or `Secret` and never appear in messages of
exceptions raised here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import sqlcipher3

from doorless.client.keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    KeyHeader,
    KeyringKey,
    KeySource,
    KeyUnavailable,
    Passphrase,
    ProfileCorrupt,
    RawKey,
    StoreKey,
    encode_header,
    fsync_dir,
    read_header,
    resolve_key_source,
    write_file_atomically,
)
from doorless.errors import ConfigurationError, LocalError, StateError
from doorless.secret import PrivateKeyBytes

HEADER_NAME = "key.json"
PENDING_HEADER_NAME = "key.json.new"
DB_NAME = "store.db"
REKEY_DB_NAME = "store.db.rekey"
LOCK_NAME = "lock"

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


# --- errors -------------------------------------------------------------------------------


class StoreError(LocalError):
    """The local store cannot be used (I/O error, disk full, newer schema, ...)."""


class WrongPassphrase(StoreError):
    """The passphrase or key does not open this profile's store."""


class ProfileLocked(StoreError):
    """Another process (or another handle in this one) has the profile open."""


# --- rows ---------------------------------------------------------------------------------


class DeviceStatus(StrEnum):
    APPROVED = "approved"
    PENDING = "pending"
    REVOKED = "revoked"


class GroupStatus(StrEnum):
    ACTIVE = "active"
    LEFT = "left"
    REMOVED = "removed"


class MessageState(StrEnum):
    PENDING = "pending"  # outgoing, not yet accepted by the server
    SENT = "sent"  # outgoing, accepted by the server
    DELIVERED = "delivered"
    FAILED = "failed"
    RECEIVED = "received"  # incoming
    READ = "read"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """This profile's identity on its server (one row)."""

    username: str
    server_url: str
    device_id: str
    cipher_suite: int
    signature_private_key: PrivateKeyBytes
    signature_public_key: bytes
    credential: bytes
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnDevice:
    """A device registered under this account (including this one)."""

    device_id: str
    signature_public_key: bytes
    name: str
    status: DeviceStatus
    first_seen_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    username: str
    display_name: str | None = None
    verified: bool = False  # identity checked out of band (safety number)
    blocked: bool = False
    accepted: bool = False  # message request accepted
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactDevice:
    """One entry of a contact's last verified device list (checked against the KT log)."""

    username: str
    device_id: str
    signature_public_key: bytes
    verified_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    group_id: bytes
    name: str
    mls_state: bytes = field(repr=False)  # serialised MLS group state: holds epoch secrets
    epoch: int
    disappearing_timer_ms: int | None = None
    status: GroupStatus = GroupStatus.ACTIVE
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message of a group. ``local_id`` is None until `Transaction.insert_message`."""

    group_id: bytes
    sender_user: str
    sender_device: str
    outgoing: bool
    content_type: str
    body: bytes = field(repr=False)
    sent_at: int
    received_at: int | None = None
    expires_at: int | None = None
    state: MessageState
    server_id: str | None = None
    franking: bytes | None = field(default=None, repr=False)  # opening material for reports
    local_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A ciphertext waiting to be sent (retried until the server accepts it)."""

    group_id: bytes | None
    kind: str
    payload: bytes = field(repr=False)
    message_local_id: int | None = None
    created_at: int
    next_attempt_at: int
    attempts: int = 0
    last_error: str | None = None
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKeyPackage:
    """The private half of a KeyPackage uploaded to the server, by KeyPackageRef."""

    ref: bytes
    key_package: bytes
    init_private_key: PrivateKeyBytes
    encryption_private_key: PrivateKeyBytes
    created_at: int
    last_resort: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequest:
    """A conversation that ``inviter``, whom this user has not accepted, added them to."""

    group_id: bytes
    inviter: str
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KtCheckpoint:
    """The last key-transparency tree head this client verified."""

    tree_size: int
    root_hash: bytes
    signed_tree_head: bytes
    verified_at: int


# --- schema -------------------------------------------------------------------------------

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
)
SCHEMA_VERSION = len(MIGRATIONS)

_MESSAGE_COLUMNS = (
    "local_id, server_id, group_id, sender_user, sender_device, outgoing, content_type, body, "
    "sent_at, received_at, expires_at, state, franking"
)
_OUTBOX_COLUMNS = (
    "outbox_id, group_id, kind, payload, message_local_id, created_at, next_attempt_at, "
    "attempts, last_error"
)


def _enum(cls: type[E], value: Any) -> E:
    try:
        return cls(value)
    except ValueError:
        raise ProfileCorrupt(f"unknown {cls.__name__} {value!r} in the store") from None


def _message(row: Sequence[Any]) -> Message:
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
        state=_enum(MessageState, row[11]),
        franking=row[12],
    )


def _outbox(row: Sequence[Any]) -> OutboxItem:
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


def _group(row: Sequence[Any]) -> Group:
    return Group(
        group_id=row[0],
        name=row[1],
        mls_state=row[2],
        epoch=row[3],
        disappearing_timer_ms=row[4],
        status=_enum(GroupStatus, row[5]),
        created_at=row[6],
        updated_at=row[7],
    )


def _contact(row: Sequence[Any]) -> Contact:
    return Contact(
        username=row[0],
        display_name=row[1],
        verified=bool(row[2]),
        blocked=bool(row[3]),
        accepted=bool(row[4]),
        created_at=row[5],
        updated_at=row[6],
    )


def _device(row: Sequence[Any]) -> OwnDevice:
    return OwnDevice(
        device_id=row[0],
        signature_public_key=row[1],
        name=row[2],
        status=_enum(DeviceStatus, row[3]),
        first_seen_at=row[4],
    )


def _key_package(row: Sequence[Any]) -> StoredKeyPackage:
    return StoredKeyPackage(
        ref=row[0],
        key_package=row[1],
        init_private_key=PrivateKeyBytes(row[2]),
        encryption_private_key=PrivateKeyBytes(row[3]),
        created_at=row[4],
        last_resort=bool(row[5]),
    )


# --- transaction --------------------------------------------------------------------------


class Transaction:
    """Typed access to the store inside one ``BEGIN IMMEDIATE`` transaction.

    Obtained from `ProfileStore.transaction`; unusable once the ``with`` block ends.
    Constraint violations (duplicate key, unknown group) raise `StateError`; the caller's
    ``with`` block then rolls everything back.
    """

    __slots__ = ("_conn", "_live")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._live = True

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self._live:
            raise StateError("the transaction has ended")
        try:
            return self._conn.execute(sql, params)
        except sqlcipher3.IntegrityError as e:
            # SQLite's message names the constraint and columns only, never values.
            raise StateError(f"store constraint violated: {e}") from e
        except sqlcipher3.Error as e:
            raise StoreError(f"store operation failed: {e}") from e

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._x(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._x(sql, params).fetchall())

    def _changed(self, cursor: Any, what: str) -> None:
        if cursor.rowcount == 0:
            raise StateError(f"{what} does not exist")

    # account

    def get_account(self) -> Account | None:
        row = self._one(
            "SELECT username, server_url, device_id, cipher_suite, signature_private_key, "
            "signature_public_key, credential, created_at FROM account WHERE id = 1"
        )
        if row is None:
            return None
        return Account(
            username=row[0],
            server_url=row[1],
            device_id=row[2],
            cipher_suite=row[3],
            signature_private_key=PrivateKeyBytes(row[4]),
            signature_public_key=row[5],
            credential=row[6],
            created_at=row[7],
        )

    def put_account(self, account: Account) -> None:
        self._x(
            "INSERT OR REPLACE INTO account (id, username, server_url, device_id, cipher_suite, "
            "signature_private_key, signature_public_key, credential, created_at) "
            "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.username,
                account.server_url,
                account.device_id,
                account.cipher_suite,
                account.signature_private_key.value,
                account.signature_public_key,
                account.credential,
                account.created_at,
            ),
        )

    # own devices

    def put_device(self, device: OwnDevice) -> None:
        self._x(
            "INSERT OR REPLACE INTO devices (device_id, signature_public_key, name, status, "
            "first_seen_at) VALUES (?, ?, ?, ?, ?)",
            (
                device.device_id,
                device.signature_public_key,
                device.name,
                device.status.value,
                device.first_seen_at,
            ),
        )

    def get_device(self, device_id: str) -> OwnDevice | None:
        row = self._one(
            "SELECT device_id, signature_public_key, name, status, first_seen_at FROM devices "
            "WHERE device_id = ?",
            (device_id,),
        )
        return None if row is None else _device(row)

    def list_devices(self) -> list[OwnDevice]:
        rows = self._all(
            "SELECT device_id, signature_public_key, name, status, first_seen_at FROM devices "
            "ORDER BY first_seen_at, device_id"
        )
        return [_device(r) for r in rows]

    def delete_device(self, device_id: str) -> None:
        self._changed(
            self._x("DELETE FROM devices WHERE device_id = ?", (device_id,)), "the device"
        )

    # contacts

    def put_contact(self, contact: Contact) -> None:
        """Insert or update a contact (its device list is kept)."""
        self._x(
            "INSERT INTO contacts (username, display_name, verified, blocked, accepted, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name, "
            "verified = excluded.verified, blocked = excluded.blocked, "
            "accepted = excluded.accepted, updated_at = excluded.updated_at",
            (
                contact.username,
                contact.display_name,
                int(contact.verified),
                int(contact.blocked),
                int(contact.accepted),
                contact.created_at,
                contact.updated_at,
            ),
        )

    def get_contact(self, username: str) -> Contact | None:
        row = self._one(
            "SELECT username, display_name, verified, blocked, accepted, created_at, updated_at "
            "FROM contacts WHERE username = ?",
            (username,),
        )
        return None if row is None else _contact(row)

    def list_contacts(self) -> list[Contact]:
        rows = self._all(
            "SELECT username, display_name, verified, blocked, accepted, created_at, updated_at "
            "FROM contacts ORDER BY username"
        )
        return [_contact(r) for r in rows]

    def delete_contact(self, username: str) -> None:
        """Delete a contact and its device list."""
        self._changed(
            self._x("DELETE FROM contacts WHERE username = ?", (username,)), "the contact"
        )

    def replace_contact_devices(self, username: str, devices: Sequence[ContactDevice]) -> None:
        """Replace the contact's verified device list with a new snapshot."""
        if any(d.username != username for d in devices):
            raise ConfigurationError("every ContactDevice must belong to the contact")
        self._x("DELETE FROM contact_devices WHERE username = ?", (username,))
        for d in devices:
            self._x(
                "INSERT INTO contact_devices (username, device_id, signature_public_key, "
                "verified_at) VALUES (?, ?, ?, ?)",
                (d.username, d.device_id, d.signature_public_key, d.verified_at),
            )

    def list_contact_devices(self, username: str) -> list[ContactDevice]:
        rows = self._all(
            "SELECT username, device_id, signature_public_key, verified_at FROM contact_devices "
            "WHERE username = ? ORDER BY device_id",
            (username,),
        )
        return [
            ContactDevice(
                username=r[0], device_id=r[1], signature_public_key=r[2], verified_at=r[3]
            )
            for r in rows
        ]

    # groups

    def insert_group(self, group: Group) -> None:
        """Add a new group; `StateError` if one with this group_id exists."""
        self._x(
            "INSERT INTO mls_groups (group_id, name, mls_state, epoch, disappearing_timer_ms, "
            "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                group.group_id,
                group.name,
                group.mls_state,
                group.epoch,
                group.disappearing_timer_ms,
                group.status.value,
                group.created_at,
                group.updated_at,
            ),
        )

    def update_group(self, group: Group) -> None:
        """Replace every field of an existing group (created_at is kept)."""
        self._changed(
            self._x(
                "UPDATE mls_groups SET name = ?, mls_state = ?, epoch = ?, "
                "disappearing_timer_ms = ?, status = ?, updated_at = ? WHERE group_id = ?",
                (
                    group.name,
                    group.mls_state,
                    group.epoch,
                    group.disappearing_timer_ms,
                    group.status.value,
                    group.updated_at,
                    group.group_id,
                ),
            ),
            "the group",
        )

    def update_group_state(self, group_id: bytes, mls_state: bytes, epoch: int, now: int) -> None:
        """Store a group's new MLS state (after a merge or a ratchet step)."""
        self._changed(
            self._x(
                "UPDATE mls_groups SET mls_state = ?, epoch = ?, updated_at = ? WHERE group_id = ?",
                (mls_state, epoch, now, group_id),
            ),
            "the group",
        )

    def get_group(self, group_id: bytes) -> Group | None:
        row = self._one(
            "SELECT group_id, name, mls_state, epoch, disappearing_timer_ms, status, "
            "created_at, updated_at FROM mls_groups WHERE group_id = ?",
            (group_id,),
        )
        return None if row is None else _group(row)

    def list_groups(self) -> list[Group]:
        rows = self._all(
            "SELECT group_id, name, mls_state, epoch, disappearing_timer_ms, status, "
            "created_at, updated_at FROM mls_groups ORDER BY created_at, group_id"
        )
        return [_group(r) for r in rows]

    def delete_group(self, group_id: bytes) -> None:
        """Delete a group with its messages and pending sends."""
        self._changed(
            self._x("DELETE FROM mls_groups WHERE group_id = ?", (group_id,)), "the group"
        )

    # messages

    def insert_message(self, message: Message) -> Message:
        """Store a message; returns it with its new ``local_id``."""
        if message.local_id is not None:
            raise ConfigurationError("a new message has no local_id yet")
        cursor = self._x(
            "INSERT INTO messages (server_id, group_id, sender_user, sender_device, outgoing, "
            "content_type, body, sent_at, received_at, expires_at, state, franking) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.server_id,
                message.group_id,
                message.sender_user,
                message.sender_device,
                int(message.outgoing),
                message.content_type,
                message.body,
                message.sent_at,
                message.received_at,
                message.expires_at,
                message.state.value,
                message.franking,
            ),
        )
        local_id: int = cursor.lastrowid
        return dataclasses.replace(message, local_id=local_id)

    def get_message(self, local_id: int) -> Message | None:
        row = self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE local_id = ?", (local_id,))
        return None if row is None else _message(row)

    def get_message_by_server_id(self, server_id: str) -> Message | None:
        row = self._one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE server_id = ?", (server_id,)
        )
        return None if row is None else _message(row)

    def list_messages(
        self,
        group_id: bytes,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages of a group in local order, oldest first.

        ``after``/``before`` bound the local_id (exclusive). With ``limit``, the newest
        ``limit`` messages before ``before`` (or the oldest after ``after`` if only ``after``
        is given).
        """
        where = ["group_id = ?"]
        params: list[Any] = [group_id]
        if after is not None:
            where.append("local_id > ?")
            params.append(after)
        if before is not None:
            where.append("local_id < ?")
            params.append(before)
        newest_first = limit is not None and after is None
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
        sql += f"ORDER BY local_id {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        messages = [_message(r) for r in self._all(sql, params)]
        if newest_first:
            messages.reverse()
        return messages

    def update_message_state(
        self, local_id: int, state: MessageState, *, expires_at: int | None = None
    ) -> None:
        """Set a message's state (and, if given, its expiry, e.g. when a timer starts on read)."""
        if expires_at is None:
            cursor = self._x(
                "UPDATE messages SET state = ? WHERE local_id = ?", (state.value, local_id)
            )
        else:
            cursor = self._x(
                "UPDATE messages SET state = ?, expires_at = ? WHERE local_id = ?",
                (state.value, expires_at, local_id),
            )
        self._changed(cursor, "the message")

    def set_message_server_id(self, local_id: int, server_id: str) -> None:
        self._changed(
            self._x("UPDATE messages SET server_id = ? WHERE local_id = ?", (server_id, local_id)),
            "the message",
        )

    def delete_message(self, local_id: int) -> None:
        self._changed(
            self._x("DELETE FROM messages WHERE local_id = ?", (local_id,)), "the message"
        )

    def delete_expired(self, now: int) -> int:
        """Delete messages whose ``expires_at`` has passed; returns how many."""
        cursor = self._x(
            "DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
        deleted: int = cursor.rowcount
        return deleted

    # processed server messages (dedupe)

    def mark_processed(self, server_id: str, now: int) -> bool:
        """Record a server message as processed; False if it already was (a duplicate)."""
        cursor = self._x(
            "INSERT OR IGNORE INTO processed (server_id, processed_at) VALUES (?, ?)",
            (server_id, now),
        )
        return bool(cursor.rowcount == 1)

    def is_processed(self, server_id: str) -> bool:
        return self._one("SELECT 1 FROM processed WHERE server_id = ?", (server_id,)) is not None

    def prune_processed(self, before: int) -> int:
        """Forget dedupe entries processed before ``before`` (the server no longer resends)."""
        deleted: int = self._x("DELETE FROM processed WHERE processed_at < ?", (before,)).rowcount
        return deleted

    # outbox

    def enqueue(self, item: OutboxItem) -> OutboxItem:
        """Queue a ciphertext for sending; returns it with its ``outbox_id``."""
        if item.outbox_id is not None:
            raise ConfigurationError("a new outbox item has no outbox_id yet")
        cursor = self._x(
            "INSERT INTO outbox (group_id, kind, payload, message_local_id, created_at, "
            "next_attempt_at, attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.group_id,
                item.kind,
                item.payload,
                item.message_local_id,
                item.created_at,
                item.next_attempt_at,
                item.attempts,
                item.last_error,
            ),
        )
        outbox_id: int = cursor.lastrowid
        return dataclasses.replace(item, outbox_id=outbox_id)

    def list_outbox(
        self, *, due_at: int | None = None, limit: int | None = None
    ) -> list[OutboxItem]:
        """Pending sends in queue order (FIFO); only those due at ``due_at`` if given."""
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
        params: list[Any] = []
        if due_at is not None:
            sql += " WHERE next_attempt_at <= ?"
            params.append(due_at)
        sql += " ORDER BY outbox_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_outbox(r) for r in self._all(sql, params)]

    def get_outbox(self, outbox_id: int) -> OutboxItem | None:
        row = self._one(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE outbox_id = ?", (outbox_id,))
        return None if row is None else _outbox(row)

    def record_attempt(self, outbox_id: int, next_attempt_at: int, error: str | None) -> None:
        """Count a failed send attempt and schedule the next one."""
        self._changed(
            self._x(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                "WHERE outbox_id = ?",
                (next_attempt_at, error, outbox_id),
            ),
            "the outbox item",
        )

    def dequeue(self, outbox_id: int) -> None:
        """Remove a sent (or abandoned) item."""
        self._changed(
            self._x("DELETE FROM outbox WHERE outbox_id = ?", (outbox_id,)), "the outbox item"
        )

    # key packages

    def insert_key_package(self, kp: StoredKeyPackage) -> None:
        self._x(
            "INSERT INTO key_packages (ref, key_package, init_private_key, "
            "encryption_private_key, created_at, last_resort) VALUES (?, ?, ?, ?, ?, ?)",
            (
                kp.ref,
                kp.key_package,
                kp.init_private_key.value,
                kp.encryption_private_key.value,
                kp.created_at,
                int(kp.last_resort),
            ),
        )

    def get_key_package(self, ref: bytes) -> StoredKeyPackage | None:
        row = self._one(
            "SELECT ref, key_package, init_private_key, encryption_private_key, created_at, "
            "last_resort FROM key_packages WHERE ref = ?",
            (ref,),
        )
        return None if row is None else _key_package(row)

    def list_key_packages(self) -> list[StoredKeyPackage]:
        rows = self._all(
            "SELECT ref, key_package, init_private_key, encryption_private_key, created_at, "
            "last_resort FROM key_packages ORDER BY created_at, ref"
        )
        return [_key_package(r) for r in rows]

    def count_key_packages(self) -> int:
        count: int = self._one("SELECT count(*) FROM key_packages WHERE last_resort = 0")[0]
        return count

    def delete_key_package(self, ref: bytes) -> None:
        """Delete a consumed KeyPackage's private keys (I6: consumed keys are deleted)."""
        self._changed(self._x("DELETE FROM key_packages WHERE ref = ?", (ref,)), "the KeyPackage")

    # key transparency

    def get_kt_checkpoint(self) -> KtCheckpoint | None:
        row = self._one(
            "SELECT tree_size, root_hash, signed_tree_head, verified_at FROM kt_checkpoint "
            "WHERE id = 1"
        )
        if row is None:
            return None
        return KtCheckpoint(
            tree_size=row[0], root_hash=row[1], signed_tree_head=row[2], verified_at=row[3]
        )

    def put_kt_checkpoint(self, checkpoint: KtCheckpoint) -> None:
        self._x(
            "INSERT OR REPLACE INTO kt_checkpoint (id, tree_size, root_hash, signed_tree_head, "
            "verified_at) VALUES (1, ?, ?, ?, ?)",
            (
                checkpoint.tree_size,
                checkpoint.root_hash,
                checkpoint.signed_tree_head,
                checkpoint.verified_at,
            ),
        )

    # message requests

    def put_request(self, request: MessageRequest) -> None:
        """Record a message request (replacing one of the same group)."""
        self._x(
            "INSERT OR REPLACE INTO message_requests (group_id, inviter, created_at) "
            "VALUES (?, ?, ?)",
            (request.group_id, request.inviter, request.created_at),
        )

    def get_request(self, group_id: bytes) -> MessageRequest | None:
        row = self._one(
            "SELECT group_id, inviter, created_at FROM message_requests WHERE group_id = ?",
            (group_id,),
        )
        if row is None:
            return None
        return MessageRequest(group_id=row[0], inviter=row[1], created_at=row[2])

    def list_requests(self) -> list[MessageRequest]:
        rows = self._all(
            "SELECT group_id, inviter, created_at FROM message_requests "
            "ORDER BY created_at, group_id"
        )
        return [MessageRequest(group_id=r[0], inviter=r[1], created_at=r[2]) for r in rows]

    def delete_request(self, group_id: bytes) -> bool:
        """Forget a request (accepted, or its conversation deleted); False if there was none."""
        cursor = self._x("DELETE FROM message_requests WHERE group_id = ?", (group_id,))
        return bool(cursor.rowcount)

    # settings

    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self._x("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def delete_setting(self, key: str) -> None:
        self._x("DELETE FROM settings WHERE key = ?", (key,))


# --- files, lock, connection --------------------------------------------------------------


class _ProfileLock:
    """An exclusive flock on the profile's lock file, held while the store is open."""

    def __init__(self, path: Path, timeout: float) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                        by = f" by process {holder}" if holder.isdigit() else ""
                        raise ProfileLocked(
                            f"the profile {path.parent} is open{by}; close it first"
                        ) from None
                    time.sleep(0.02)
            # For the message a second opener shows; the flock itself is the lock.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


def _sql_key(key: StoreKey) -> str:
    # A raw key in SQLCipher's blob-literal form skips its PBKDF2 (the key is already derived).
    return f"x'{key.value.hex()}'"


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def _db_files(db_path: Path) -> list[Path]:
    return [db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm", "-journal"))]


def _connect(db_path: Path, key: StoreKey) -> Any:
    """Open ``db_path`` with ``key``; `WrongPassphrase` if the key does not decrypt it."""
    if not db_path.exists():
        # Create the file 0600 ourselves; SQLite gives its WAL and shm files the same mode.
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        conn = sqlcipher3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    except sqlcipher3.Error as e:
        raise StoreError(f"cannot open the store: {e}") from e
    try:
        # Without this SQLCipher prints "ERROR CORE ... hmac check failed" to stderr on a
        # wrong key; we raise a typed error instead. (The level is process-wide.)
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f'PRAGMA key = "{_sql_key(key)}"')
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher3.DatabaseError:
            raise WrongPassphrase(
                "wrong passphrase or key for this profile (or its store file is damaged)"
            ) from None
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot switch the store to WAL mode (got {mode})")
        for pragma in (
            "foreign_keys = ON",
            "secure_delete = ON",
            "synchronous = FULL",
            "temp_store = MEMORY",
        ):
            conn.execute(f"PRAGMA {pragma}")
    except sqlcipher3.Error as e:
        conn.close()
        raise StoreError(f"cannot open the store: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: Any) -> int:
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


def _make_profile_dir(profile: Path) -> None:
    try:
        profile.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigurationError(f"cannot create the profile folder {profile}: {e}") from e
    if not profile.is_dir():
        raise ConfigurationError(f"{profile} is not a folder")


# --- the store ----------------------------------------------------------------------------


class ProfileStore:
    """The open, locked, decrypted store of one profile. Create with `ProfileStore.open`."""

    def __init__(self, profile: Path, conn: Any, lock: _ProfileLock) -> None:
        self.profile = profile
        self._conn: Any = conn
        self._lock_file = lock
        self._mutex = threading.RLock()
        self._in_transaction = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorless-store")

    # opening

    @classmethod
    def open(
        cls,
        profile_dir: str | os.PathLike[str],
        passphrase: str | KeySource | None = None,
        *,
        argon2: Argon2Params = DEFAULT_ARGON2,
        lock_timeout: float = 0.0,
        interactive: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> ProfileStore:
        """Open (or create) the profile in ``profile_dir``.

        ``passphrase`` is a passphrase string or a key source (`Passphrase`, `KeyringKey`,
        `RawKey`); if None, see `doorless.client.keys.resolve_key_source`. ``argon2`` applies
        only to a new profile: an existing one keeps the parameters in its key header.

        Raises `WrongPassphrase`, `ProfileLocked`, `KeyUnavailable`, `ProfileCorrupt`,
        `StoreError`; on any error nothing in the folder has changed (beyond its creation).
        """
        profile = Path(profile_dir)
        _make_profile_dir(profile)
        lock = _ProfileLock(profile / LOCK_NAME, lock_timeout)
        try:
            conn = _unlock(profile, passphrase, argon2, interactive, environ)
        except BaseException:
            lock.release()
            raise
        return cls(profile, conn, lock)

    # transactions

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raises."""
        with self._mutex:
            conn = self._require_open()
            if self._in_transaction:
                raise StateError("a store transaction is already open (no nesting)")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlcipher3.Error as e:
                raise StoreError(f"cannot start a store transaction: {e}") from e
            self._in_transaction = True
            tx = Transaction(conn)
            try:
                yield tx
            except BaseException:
                tx._live = False
                self._rollback(conn)
                raise
            else:
                tx._live = False
                try:
                    conn.execute("COMMIT")
                except sqlcipher3.Error as e:
                    self._rollback(conn)
                    raise StoreError(f"cannot commit the store transaction: {e}") from e
            finally:
                self._in_transaction = False

    @staticmethod
    def _rollback(conn: Any) -> None:
        # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _require_open(self) -> Any:
        if self._conn is None:
            raise StateError("the store is closed")
        return self._conn

    def _require_idle(self) -> Any:
        conn = self._require_open()
        if self._in_transaction:
            raise StateError("not allowed inside a store transaction")
        return conn

    @property
    def schema_version(self) -> int:
        with self._mutex:
            version: int = self._require_open().execute("PRAGMA user_version").fetchone()[0]
            return version

    # maintenance

    def delete_expired(self, now: int) -> int:
        """Delete disappearing messages whose time has come; returns how many."""
        with self.transaction() as tx:
            return tx.delete_expired(now)

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it."""
        with self._mutex:
            conn = self._require_idle()
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlcipher3.Error as e:
                raise StoreError(f"checkpoint failed: {e}") from e
            if busy:
                raise StoreError("checkpoint could not complete")

    def check_integrity(self) -> None:
        """Run SQLite's full integrity check; `StoreError` if the database is damaged."""
        with self._mutex:
            conn = self._require_idle()
            try:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
            except sqlcipher3.Error as e:
                raise StoreError(f"integrity check failed: {e}") from e
            if [tuple(r) for r in rows] != [("ok",)]:
                raise StoreError(f"the store is damaged: {rows[0][0]}")

    def vacuum(self) -> None:
        """Rebuild the database file and truncate the WAL.

        With ``secure_delete`` the deleted rows are already overwritten; vacuum also drops free
        pages and old page images so the file keeps nothing of them.
        """
        with self._mutex:
            conn = self._require_idle()
            try:
                conn.execute("VACUUM")
            except sqlcipher3.Error as e:
                raise StoreError(f"vacuum failed: {e}") from e
            self.checkpoint()

    def change_key(self, new: str | KeySource, *, argon2: Argon2Params = DEFAULT_ARGON2) -> None:
        """Re-encrypt the store under a new key (new passphrase, new Argon2 parameters, ...).

        The data is exported into a new file under the new key, then the file and the key
        header are switched by renames; `ProfileStore.open` completes or discards a switch that
        a crash interrupted. If this raises after the old connection was closed, the store is
        closed too: open it again (with the old or the new key; the one that works is the
        state on disk).
        """
        with self._mutex:
            conn = self._require_idle()
            source = resolve_key_source(new, None, self.profile)
            header, key = source.create(argon2)
            db_path = self.profile / DB_NAME
            rekey_path = self.profile / REKEY_DB_NAME
            pending_path = self.profile / PENDING_HEADER_NAME
            for stale in _db_files(rekey_path):
                _remove(stale)
            try:
                _export(conn, rekey_path, key)
                write_file_atomically(pending_path, encode_header(header))
                self.checkpoint()
            except BaseException:
                for stale in [pending_path, *_db_files(rekey_path)]:
                    _remove(stale)
                raise
            # From here the old connection is gone: any failure closes the store.
            self._conn = None
            conn.close()
            try:
                wal = db_path.with_name(db_path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise StoreError("the store's WAL was not emptied; key not changed")
                for stale in _db_files(db_path)[1:]:
                    _remove(stale)
                os.replace(rekey_path, db_path)
                fsync_dir(self.profile)
                os.replace(pending_path, self.profile / HEADER_NAME)
                fsync_dir(self.profile)
                self._conn = _connect(db_path, key)
            except BaseException:
                self._close_now()
                raise

    # async

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the store's worker thread and await its result."""
        loop = asyncio.get_running_loop()
        job = functools.partial(fn, *args, **kwargs)
        try:
            future = loop.run_in_executor(self._executor, job)
        except RuntimeError:  # the executor was shut down by close()
            raise StateError("the store is closed") from None
        return await future

    async def run_transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn(tx)`` inside one transaction on the store's worker thread."""

        def job() -> T:
            with self.transaction() as tx:
                return fn(tx)

        return await self.run(job)

    # closing

    def close(self) -> None:
        """Close the database and release the profile lock (idempotent)."""
        with self._mutex:
            if self._in_transaction:
                raise StateError("close() inside a store transaction")
            self._close_now()

    def _close_now(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self._lock_file.release()
            # Jobs already queued still run (and find the store closed); never wait here, close()
            # may be running on the worker itself (aclose).
            self._executor.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        return self._conn is None

    async def aclose(self) -> None:
        """Close after the jobs already submitted with `run` have finished."""
        if not self.closed:
            await self.run(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"ProfileStore({str(self.profile)!r}, {state})"


def _export(conn: Any, path: Path, key: StoreKey) -> None:
    """Copy the whole database into a new file at ``path`` encrypted under ``key``."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    try:
        conn.execute("ATTACH DATABASE ? AS rekeyed KEY ?", (str(path), _sql_key(key)))
        try:
            conn.execute("PRAGMA rekeyed.synchronous = FULL")
            conn.execute("SELECT sqlcipher_export('rekeyed')")
            # sqlcipher_export copies schema and rows, not the header's user_version.
            conn.execute(f"PRAGMA rekeyed.user_version = {version}")
        finally:
            conn.execute("DETACH DATABASE rekeyed")
    except sqlcipher3.Error as e:
        raise StoreError(f"re-encrypting the store failed: {e}") from e
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlock(
    profile: Path,
    given: str | KeySource | None,
    argon2: Argon2Params,
    interactive: bool,
    environ: Mapping[str, str] | None,
) -> Any:
    """Resolve the key, recover an interrupted creation or key change, connect, migrate."""
    header_path = profile / HEADER_NAME
    pending_path = profile / PENDING_HEADER_NAME
    db_path = profile / DB_NAME
    header = read_header(header_path)

    def source_for(h: KeyHeader | None) -> KeySource:
        return resolve_key_source(given, h, profile, interactive=interactive, environ=environ)

    if header is None:
        # A new profile, or a creation that crashed before its header was promoted (it holds
        # nothing yet): start over. A store file without any header is someone else's file.
        if not pending_path.exists() and db_path.exists() and db_path.stat().st_size > 0:
            raise ProfileCorrupt(f"{db_path} exists but its key header {HEADER_NAME} is missing")
        header, key = source_for(None).create(argon2)
        for stale in [*_db_files(db_path), *_db_files(profile / REKEY_DB_NAME)]:
            _remove(stale)
        write_file_atomically(pending_path, encode_header(header))
        conn = _connect(db_path, key)
        try:
            _migrate(conn)
            os.replace(pending_path, header_path)
            fsync_dir(profile)
        except BaseException:
            conn.close()
            raise
        return conn

    if not db_path.exists():
        raise ProfileCorrupt(f"the store file {db_path} is missing")
    pending = read_header(pending_path)
    source = source_for(header)
    try:
        conn = _connect(db_path, source.unlock(header))
    except (WrongPassphrase, ConfigurationError) as first:
        if pending is None:
            raise
        # A key change was interrupted after the new file replaced the old one: the pending
        # header is the right one. If it does not open the store either, report the first
        # error.
        try:
            pending_source = source if type(pending) is type(header) else source_for(pending)
            conn = _connect(db_path, pending_source.unlock(pending))
        except (WrongPassphrase, ConfigurationError):
            raise first from None
        try:
            os.replace(pending_path, header_path)
            fsync_dir(profile)
        except BaseException:
            conn.close()
            raise
    else:
        # A key change that never reached the switch: discard its leftovers.
        _remove(pending_path)
    try:
        for stale in _db_files(profile / REKEY_DB_NAME):
            _remove(stale)
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


__all__ = [
    "DB_NAME",
    "DEFAULT_ARGON2",
    "SCHEMA_VERSION",
    "Account",
    "Argon2Params",
    "Contact",
    "ContactDevice",
    "DeviceStatus",
    "Group",
    "GroupStatus",
    "KeySource",
    "KeyUnavailable",
    "KeyringKey",
    "KtCheckpoint",
    "Message",
    "MessageRequest",
    "MessageState",
    "OutboxItem",
    "OwnDevice",
    "Passphrase",
    "ProfileCorrupt",
    "ProfileLocked",
    "ProfileStore",
    "RawKey",
    "StoreError",
    "StoreKey",
    "StoredKeyPackage",
    "Transaction",
    "WrongPassphrase",
]
