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

Modules: `errors`, `rows` (the records), `schema` (migrations, row decoding), `connection`
(folder, lock, SQLCipher, key recovery), `base` and one module per record family (`accounts`,
`groups`, `messages`, `outbox`, `key_material`, `settings`, `search` (full-text search over
the text messages), `rich`) making up `transaction`, and
`profile` (`ProfileStore`).
"""

from __future__ import annotations

from doorless.client.keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    KeyringKey,
    KeySource,
    KeyUnavailable,
    Passphrase,
    ProfileCorrupt,
    RawKey,
    StoreKey,
)
from doorless.client.store.connection import (
    DB_NAME,
    HEADER_NAME,
    LOCK_NAME,
    PENDING_HEADER_NAME,
    REKEY_DB_NAME,
)
from doorless.client.store.errors import (
    InvalidSearchQuery,
    ProfileLocked,
    StoreError,
    WrongPassphrase,
)
from doorless.client.store.profile import ProfileStore
from doorless.client.store.rich import EditVersion, RichMeta, StoredReaction
from doorless.client.store.rows import (
    Account,
    Contact,
    ContactDevice,
    DeviceStatus,
    Group,
    GroupStatus,
    KtCheckpoint,
    Message,
    MessageRequest,
    MessageState,
    OutboxItem,
    OwnDevice,
    StoredKeyPackage,
)
from doorless.client.store.schema import MIGRATIONS, SCHEMA_VERSION
from doorless.client.store.search import SearchRow
from doorless.client.store.transaction import Transaction

__all__ = [
    "DB_NAME",
    "DEFAULT_ARGON2",
    "HEADER_NAME",
    "LOCK_NAME",
    "MIGRATIONS",
    "PENDING_HEADER_NAME",
    "REKEY_DB_NAME",
    "SCHEMA_VERSION",
    "Account",
    "Argon2Params",
    "Contact",
    "ContactDevice",
    "DeviceStatus",
    "EditVersion",
    "Group",
    "GroupStatus",
    "InvalidSearchQuery",
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
    "RichMeta",
    "SearchRow",
    "StoreError",
    "StoreKey",
    "StoredKeyPackage",
    "StoredReaction",
    "Transaction",
    "WrongPassphrase",
]
