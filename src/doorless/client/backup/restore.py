"""Restoring a backup into a profile folder (`restore_backup`).

1. The whole file is read, authenticated and decoded in memory (`load_backup`): a tampered,
   truncated, wrong-key or too-new backup is refused here, before anything is written (I4).
2. The target folder is checked: one that holds a profile is replaced only with ``force``,
   and never while a process has it open (its lock).
3. The profile is built in a new sibling folder: the store (under the profile passphrase)
   with the backup's tables, each conversation with a one-member placeholder MLS state that
   carries its name, kind and timer (the old MLS states are not in the backup), and the
   backup's files.
4. Each conversation the device was in is rejoined by external commit (RFC 9420 §12.4.3.2,
   `doorless.client.membership.rejoin_locked`) with the same device identity, replacing its
   old leaf; what cannot be rejoined (removed since, unknown to the server, ...) is reported
   in `RestoreReport.not_restored` and keeps its history, read-only.
5. The new folder takes the target's place by renames; the replaced one is deleted. A failure
   before this step deletes the new folder and leaves the target as it was.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from doorless.client import maintenance, membership, setup
from doorless.client.backup.create import ATTACHMENTS_PREFIX, BACKUP_TABLES, LEFT_OUT
from doorless.client.backup.errors import BackupCorrupt, ProfileInUse, UnsupportedBackup
from doorless.client.backup.format import (
    BackupSecret,
    Header,
    KeyKind,
    parse_recovery_key,
    passphrase_secret,
    read_chunks,
    read_header,
)
from doorless.client.backup.snapshot import GroupDisplay, Snapshot, TableDump, decode_snapshot
from doorless.client.conversations import CONVERSATION_INFO_EXTENSION
from doorless.client.core import MLS_CONFIG, Session
from doorless.client.errors import ServerError
from doorless.client.options import ClientOptions, PassphraseArg
from doorless.client.safety import DISAPPEARING_EXTENSION
from doorless.client.store import (
    DB_NAME,
    HEADER_NAME,
    LOCK_NAME,
    PENDING_HEADER_NAME,
    SCHEMA_VERSION,
    GroupStatus,
    MessageState,
    ProfileStore,
    Transaction,
)
from doorless.client.store.connection import ProfileLock
from doorless.client.store.snapshot import SqlValue
from doorless.client.transport import ProgressCallback
from doorless.errors import DoorlessError
from doorless.mls.extensions import Extension
from doorless.mls.group import Group
from doorless.wire.errors import ErrorCode

# Files of a profile folder a backup may carry (its own store and key are never among them).
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ATTACHMENT_NAME = re.compile(re.escape(ATTACHMENTS_PREFIX) + r"[0-9a-f]{64}")
_RESERVED = frozenset({HEADER_NAME, PENDING_HEADER_NAME, DB_NAME, LOCK_NAME})


@dataclass(frozen=True, slots=True)
class NotRestored:
    """A conversation whose history was restored but which this device could not rejoin."""

    conversation_id: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class RestoreReport:
    profile: Path
    username: str
    device_id: str
    backup_created_at: int
    conversations: int
    messages: int
    attachments: int
    rejoined: tuple[str, ...]
    not_restored: tuple[NotRestored, ...]


# --- reading ------------------------------------------------------------------------------


def backup_key_kind(path: str | os.PathLike[str]) -> KeyKind:
    """Whether the backup at ``path`` opens with a recovery key or a passphrase."""
    with open(path, "rb") as src:
        return read_header(src).key_kind


def _unlocker(key: str) -> functools.partial[BackupSecret]:
    return functools.partial(_secret_for, key)


def _secret_for(key: str, header: Header) -> BackupSecret:
    if header.key_kind is KeyKind.recovery_key:
        return parse_recovery_key(key)
    assert header.argon2 is not None
    return passphrase_secret(key, header.argon2, header.argon2_salt)


def load_backup(path: str | os.PathLike[str], key: str) -> Snapshot:
    """Read, authenticate and decode the whole backup (``key``: its recovery key, or its
    passphrase). Raises a `BackupError` (or `InvalidRecoveryKey`); writes nothing."""
    with open(path, "rb") as src:
        data = b"".join(read_chunks(src, _unlocker(key)))
    snapshot = decode_snapshot(data)
    _validate(snapshot)
    return snapshot


def _validate(snapshot: Snapshot) -> None:
    if snapshot.meta.schema_version > SCHEMA_VERSION:
        raise UnsupportedBackup(
            f"this backup comes from a newer Doorless (store version "
            f"{snapshot.meta.schema_version}, this one has {SCHEMA_VERSION}); upgrade Doorless"
        )
    unknown = [t.name for t in snapshot.tables if t.name not in BACKUP_TABLES]
    if unknown:
        raise UnsupportedBackup(f"this backup holds tables this Doorless does not know: {unknown}")
    account = snapshot.table("account")
    if account is None or len(account.rows) != 1:
        raise BackupCorrupt("the backup holds no account")
    groups = snapshot.table("mls_groups")
    group_ids = {_group_id(groups, r) for r in groups.rows} if groups else set()
    if groups is not None:
        _column(groups, "epoch")
    messages = snapshot.table("messages")
    if messages is not None:
        _column(messages, "state")
    if group_ids != {g.group_id for g in snapshot.groups}:
        raise BackupCorrupt("the backup's conversations do not match their descriptions")
    for name, _ in snapshot.files:
        if not (_ATTACHMENT_NAME.fullmatch(name) or _FILE_NAME.fullmatch(name)):
            raise BackupCorrupt("the backup holds a file with an invalid name")
        if name in _RESERVED:
            raise BackupCorrupt(f"the backup holds a file it must not ({name})")


def _column(table: TableDump, column: str) -> int:
    try:
        return table.columns.index(column)
    except ValueError:
        raise BackupCorrupt(f"the backup's {table.name} has no column {column}") from None


def _group_id(table: TableDump, row: Sequence[SqlValue]) -> bytes:
    value = row[_column(table, "group_id")]
    if not isinstance(value, bytes):
        raise BackupCorrupt("a conversation of the backup has an invalid id")
    return value


# --- the target folder --------------------------------------------------------------------


def _has_profile(target: Path) -> bool:
    return any((target / name).exists() for name in (HEADER_NAME, DB_NAME, PENDING_HEADER_NAME))


def _claim(target: Path, force: bool) -> ProfileLock | None:
    if not _has_profile(target):
        return None
    if not force:
        raise ProfileInUse(
            f"{target} already holds a profile: restore into a new folder, or replace it "
            "(everything in it is lost) with force"
        )
    return ProfileLock(target / LOCK_NAME, 0.0)  # ProfileLocked while it is open


def _swap(stage: Path, target: Path) -> None:
    if target.exists():
        aside = target.with_name(f".{target.name}.replaced-{secrets.token_hex(4)}")
        os.rename(target, aside)
        os.rename(stage, target)
        shutil.rmtree(aside)
    else:
        os.rename(stage, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- building the profile -----------------------------------------------------------------


def _insert_base(snapshot: Snapshot, tx: Transaction) -> None:
    later = {"mls_groups", "messages", "message_requests"}
    for table in snapshot.tables:
        if table.name not in later:
            tx.insert_rows(table.name, table.columns, table.rows)


def _placeholder(s: Session, display: GroupDisplay) -> Group:
    """A one-member group with the conversation's id, name and timer: something to show and
    to rejoin from, holding no key of the real group."""
    extensions = [Extension(CONVERSATION_INFO_EXTENSION, display.conversation_info)]
    if display.disappearing:
        extensions.append(Extension(DISAPPEARING_EXTENSION, display.disappearing))
    bundle = s.new_key_package()
    return Group.create(
        s.suite,
        display.group_id,
        bundle.key_package.leaf_node,
        bundle.encryption_private_key,
        s.signature_key,
        extensions=extensions,
        config=MLS_CONFIG,
    )


def _insert_conversations(snapshot: Snapshot, states: dict[bytes, Group], tx: Transaction) -> None:
    groups = snapshot.table("mls_groups")
    if groups is not None:
        columns = (*groups.columns, *sorted(LEFT_OUT["mls_groups"]))
        epoch_at = _column(groups, "epoch")
        rows = []
        for row in groups.rows:
            state = states[_group_id(groups, row)]
            values = list(row)
            values[epoch_at] = state.epoch
            rows.append((*values, state.to_bytes()))
        tx.insert_rows("mls_groups", columns, rows)
    messages = snapshot.table("messages")
    if messages is not None:
        # A message still pending was in the outbox, which a backup does not keep.
        state_at = _column(messages, "state")
        rows = [
            tuple(
                MessageState.FAILED.value
                if i == state_at and v == MessageState.PENDING.value
                else v
                for i, v in enumerate(row)
            )
            for row in messages.rows
        ]
        tx.insert_rows("messages", messages.columns, rows)
    requests = snapshot.table("message_requests")
    if requests is not None:
        tx.insert_rows("message_requests", requests.columns, requests.rows)


def _write_files(stage: Path, files: Sequence[tuple[str, bytes]]) -> None:
    for name, data in files:
        path = stage / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


async def _build(
    stage: Path, snapshot: Snapshot, passphrase: PassphraseArg, options: ClientOptions
) -> Session:
    store = await asyncio.to_thread(
        ProfileStore.open, stage, passphrase, argon2=options.argon2, lock_timeout=0.0
    )
    try:
        await store.run_transaction(functools.partial(_insert_base, snapshot))
    finally:
        await store.aclose()
    s = await setup.open_profile(stage, passphrase, options=options)
    try:
        states = {}
        for display in snapshot.groups:
            states[display.group_id] = await asyncio.to_thread(_placeholder, s, display)
        await s.tx(functools.partial(_insert_conversations, snapshot, states))
        await asyncio.to_thread(_write_files, stage, snapshot.files)
    except BaseException:
        await maintenance.close(s)
        raise
    return s


_REASONS = {
    ErrorCode.NOT_GROUP_MEMBER.value: "this account was removed from it since the backup",
    ErrorCode.NOT_FOUND.value: "the server does not know it (or no longer keeps it)",
}


async def _rejoin_all(
    s: Session, progress: ProgressCallback | None
) -> tuple[list[str], list[NotRestored]]:
    rejoined: list[str] = []
    missed: list[NotRestored] = []
    rows = await s.tx(lambda tx: tx.list_groups())
    for done, row in enumerate(rows, 1):
        if progress is not None:
            progress(done, len(rows))
        cid = row.group_id.hex()
        if row.status is not GroupStatus.ACTIVE:
            missed.append(NotRestored(cid, row.name, f"this device had {row.status.value} it"))
            continue
        async with s.lock:
            try:
                await membership.rejoin_locked(s, row.group_id)
            except ServerError as e:
                reason = _REASONS.get(e.code, f"the server refused: {e.message}")
                missed.append(NotRestored(cid, row.name, reason))
                if e.code in _REASONS:
                    conv = await s.require_active(row.group_id)
                    gone = conv.evolve(status=GroupStatus.REMOVED, updated_at=s.now_ms())
                    await s.save(
                        gone, functools.partial(Transaction.update_group, group=gone.stored())
                    )
                continue
            except DoorlessError as e:  # e.g. a member's key not in the log: never silently
                missed.append(NotRestored(cid, row.name, f"could not rejoin: {e}"))
                continue
        rejoined.append(cid)
    return rejoined, missed


async def restore_backup(
    profile_dir: str | os.PathLike[str],
    backup: str | os.PathLike[str],
    key: str,
    passphrase: PassphraseArg,
    *,
    force: bool = False,
    options: ClientOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Restore ``backup`` (opened with ``key``: its recovery key or passphrase) into
    ``profile_dir``, whose store is encrypted under ``passphrase`` (as for any profile), and
    rejoin its conversations (``progress(done, total)``: conversations). See the module
    docstring for the steps and guarantees."""
    opts = options or ClientOptions()
    target = Path(profile_dir)
    snapshot = await asyncio.to_thread(load_backup, backup, key)
    lock = _claim(target, force)
    stage = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")
    try:
        s = await _build(stage, snapshot, passphrase, opts)
        try:
            rejoined, missed = await _rejoin_all(s, progress)
        finally:
            await maintenance.close(s)
        await asyncio.to_thread(_swap, stage, target)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, stage, True)
        raise
    finally:
        if lock is not None:
            lock.release()
    tables = {t.name: t for t in snapshot.tables}
    return RestoreReport(
        profile=target,
        username=snapshot.meta.username,
        device_id=snapshot.meta.device_id,
        backup_created_at=snapshot.meta.created_at,
        conversations=len(snapshot.groups),
        messages=len(tables["messages"].rows) if "messages" in tables else 0,
        attachments=sum(1 for n, _ in snapshot.files if n.startswith(ATTACHMENTS_PREFIX)),
        rejoined=tuple(rejoined),
        not_restored=tuple(missed),
    )


__all__ = [
    "NotRestored",
    "RestoreReport",
    "backup_key_kind",
    "load_backup",
    "restore_backup",
]
