"""Making a backup of an open profile (`create_backup`).

One store transaction reads everything (a consistent picture), then the records are sealed
chunk by chunk into ``FILE.part`` (0600), which is synced and renamed to ``FILE``: a backup
file either is complete or does not exist.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from doorless.client import inbox
from doorless.client.backup.format import BackupKey, BackupWriter, KeyKind
from doorless.client.backup.passphrase import check_strength
from doorless.client.backup.snapshot import (
    GroupDisplay,
    Meta,
    TableDump,
    encode_end,
    encode_file,
    encode_group,
    encode_meta,
    encode_row,
    encode_table,
)
from doorless.client.conversations import CONVERSATION_INFO_EXTENSION
from doorless.client.core import MLS_CONFIG, Session, message_info
from doorless.client.events import MessageKind
from doorless.client.keys import Argon2Params
from doorless.client.safety import DISAPPEARING_EXTENSION
from doorless.client.store import SCHEMA_VERSION, Transaction
from doorless.client.transport import ProgressCallback
from doorless.errors import ConfigurationError
from doorless.mls.extensions import find_extension
from doorless.mls.group import Group

# The tables a backup holds, in an order that satisfies their foreign keys. Left out: the
# outbox (ciphertexts of stale epochs). ``mls_groups`` loses its MLS state (`LEFT_OUT`).
BACKUP_TABLES: tuple[str, ...] = (
    "settings",
    "account",
    "devices",
    "contacts",
    "contact_devices",
    "kt_checkpoint",
    "key_packages",
    "processed",
    "mls_groups",
    "messages",
    "message_requests",
)
LEFT_OUT: dict[str, frozenset[str]] = {"mls_groups": frozenset({"mls_state"})}
ATTACHMENTS_PREFIX = inbox.ATTACHMENTS_FOLDER + "/"


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What `create_backup` wrote. ``recovery_key`` is set for a recovery-key backup: show it
    once, it is the only way to open the file."""

    path: Path
    size: int
    conversations: int
    messages: int
    attachments: int
    recovery_key: str | None


def _dump(tx: Transaction) -> tuple[list[TableDump], list[GroupDisplay]]:
    tables: list[TableDump] = []
    for name in BACKUP_TABLES:
        columns = tuple(c for c in tx.table_columns(name) if c not in LEFT_OUT.get(name, ()))
        tables.append(TableDump(name, columns, tuple(tx.dump_rows(name, columns))))
    groups = []
    for row in tx.list_groups():
        extensions = Group.from_bytes(row.mls_state, MLS_CONFIG).extensions
        info = find_extension(extensions, CONVERSATION_INFO_EXTENSION)
        timer = find_extension(extensions, DISAPPEARING_EXTENSION)
        groups.append(
            GroupDisplay(
                row.group_id,
                b"" if info is None else info.extension_data,
                b"" if timer is None else timer.extension_data,
            )
        )
    return tables, groups


async def _attachments(s: Session, progress: ProgressCallback | None) -> list[tuple[str, bytes]]:
    """The encrypted blob of every file this profile received or sent, named by the SHA-256
    of the ciphertext (its key stays in the messages, so the blob is useless without them;
    a restored profile keeps the blobs as they are: nothing in clear on its disk, I6)."""
    rows = await s.tx(
        lambda tx: [m for g in tx.list_groups() for m in tx.list_messages(g.group_id)]
    )
    files: dict[str, bytes] = {}
    wanted = [message_info(m) for m in rows if m.content_type == MessageKind.FILE.value]
    for done, info in enumerate(wanted, 1):
        assert info.file is not None
        digest = info.file.descriptor.ciphertext_sha256.hex()
        if digest not in files:
            files[digest] = await inbox.download_blob(s, info.file)
        if progress is not None:
            progress(done, len(wanted))
    return [(ATTACHMENTS_PREFIX + digest, data) for digest, data in sorted(files.items())]


def _records(
    meta: Meta,
    tables: list[TableDump],
    groups: list[GroupDisplay],
    files: Sequence[tuple[str, bytes]],
) -> Iterator[bytes]:
    yield encode_meta(meta)
    for table in tables:
        yield encode_table(table.name, table.columns)
        for row in table.rows:
            yield encode_row(row)
    for group in groups:
        yield encode_group(group)
    for name, data in files:
        yield encode_file(name, data)
    yield encode_end()


def _write(
    path: Path,
    key: BackupKey,
    records: Iterator[bytes],
    count: int,
    progress: ProgressCallback | None,
) -> int:
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = BackupWriter(out, key)
            for done, record in enumerate(records, 1):
                writer.write(record)
                if progress is not None and done % 256 == 0:
                    progress(done, count)
            writer.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(count, count)
    return path.stat().st_size


def new_backup_key(passphrase: str | None, argon2: Argon2Params) -> BackupKey:
    """A fresh recovery key (None), or a strong passphrase (`WeakPassphrase`) through
    Argon2id with ``argon2``."""
    if passphrase is None:
        return BackupKey.new_recovery_key()
    check_strength(passphrase)
    return BackupKey.from_passphrase(passphrase, argon2)


async def create_backup(
    s: Session,
    path: str | os.PathLike[str],
    key: BackupKey,
    *,
    attachments: bool = False,
    profile_files: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> BackupSummary:
    """Write an encrypted backup of this profile to ``path`` (see the package docstring)."""
    target = Path(path)
    if target.is_dir():
        raise ConfigurationError(f"{target} is a folder; name the backup file")
    tables, groups = await s.tx(_dump)
    files: list[tuple[str, bytes]] = []
    for name in profile_files:
        source = s.store.profile / name
        if source.is_file():
            files.append((name, await asyncio.to_thread(source.read_bytes)))
    if attachments:
        files += await _attachments(s, progress)
    meta = Meta(s.now_ms(), SCHEMA_VERSION, s.me.user, s.me.device_id, s.account.server_url)
    count = 3 + len(tables) + sum(len(t.rows) for t in tables) + len(groups) + len(files)
    size = await asyncio.to_thread(
        _write, target, key, _records(meta, tables, groups, files), count, progress
    )
    by_name = {t.name: t for t in tables}
    return BackupSummary(
        path=target,
        size=size,
        conversations=len(by_name["mls_groups"].rows),
        messages=len(by_name["messages"].rows),
        attachments=sum(1 for n, _ in files if n.startswith(ATTACHMENTS_PREFIX)),
        recovery_key=key.recovery_key if key.key_kind is KeyKind.recovery_key else None,
    )


__all__ = [
    "ATTACHMENTS_PREFIX",
    "BACKUP_TABLES",
    "LEFT_OUT",
    "BackupSummary",
    "create_backup",
    "new_backup_key",
]
