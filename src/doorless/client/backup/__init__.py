"""Encrypted backups of a profile, and restoring them (docs/client.md, "Backups").

A backup holds this device's identity (account, signature key, credential), the account's
devices, contacts, settings, the key-transparency state, the private keys of the KeyPackages
it published, message history, chosen files of the profile folder (its ``config.toml``) and,
optionally, the files of its messages. It never holds MLS group states: a restored device
rejoins each conversation by external commit.

Modules: `format` (the file: header, chunked AES-256-GCM, recovery keys, Argon2id),
`snapshot` (the plaintext records), `passphrase` (the strength check), `create`, `restore`,
`errors`.
"""

from __future__ import annotations

from doorless.client.backup.create import BackupSummary, create_backup, new_backup_key
from doorless.client.backup.errors import (
    BackupCorrupt,
    BackupError,
    BackupTruncated,
    InvalidRecoveryKey,
    ProfileInUse,
    UnsupportedBackup,
    WeakPassphrase,
    WrongBackupKey,
)
from doorless.client.backup.format import BackupKey, KeyKind, parse_recovery_key
from doorless.client.backup.passphrase import check_strength
from doorless.client.backup.restore import (
    NotRestored,
    RestoreReport,
    backup_key_kind,
    load_backup,
    restore_backup,
)

__all__ = [
    "BackupCorrupt",
    "BackupError",
    "BackupKey",
    "BackupSummary",
    "BackupTruncated",
    "InvalidRecoveryKey",
    "KeyKind",
    "NotRestored",
    "ProfileInUse",
    "RestoreReport",
    "UnsupportedBackup",
    "WeakPassphrase",
    "WrongBackupKey",
    "backup_key_kind",
    "check_strength",
    "create_backup",
    "load_backup",
    "new_backup_key",
    "parse_recovery_key",
    "restore_backup",
]
