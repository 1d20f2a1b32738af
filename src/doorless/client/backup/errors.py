"""What can go wrong with a backup file, in the one exception tree (`doorless.errors`)::

RemoteError
 └── BackupError              the backup file cannot be used (nothing was written)
      ├── BackupCorrupt       not a backup, or altered (an authentication tag failed)
      ├── BackupTruncated     the file ends before its final chunk
      ├── WrongBackupKey      the recovery key or passphrase does not open it
      └── UnsupportedBackup   a format or store version this Doorless cannot read
ConfigurationError
 ├── WeakPassphrase           refused when a backup is created under a passphrase
 └── InvalidRecoveryKey       a recovery key that is not 52 base32 letters
StateError
 └── ProfileInUse             restoring over a profile that holds an account (--force)
"""

from __future__ import annotations

from doorless.errors import ConfigurationError, RemoteError, StateError


class BackupError(RemoteError):
    """The backup file cannot be used; nothing was written."""


class BackupCorrupt(BackupError):
    """Not a Doorless backup, or altered after it was written."""


class BackupTruncated(BackupError):
    """The backup ends before its final chunk (cut short while copying?)."""


class WrongBackupKey(BackupError):
    """The recovery key or passphrase does not open this backup."""


class UnsupportedBackup(BackupError):
    """A backup format version (or store schema) newer than this Doorless."""


class WeakPassphrase(ConfigurationError):
    """A backup passphrase too easy to guess."""


class InvalidRecoveryKey(ConfigurationError):
    """A recovery key that is not well-formed."""


class ProfileInUse(StateError):
    """The target profile already holds an account (restore over it only with force)."""


__all__ = [
    "BackupCorrupt",
    "BackupError",
    "BackupTruncated",
    "InvalidRecoveryKey",
    "ProfileInUse",
    "UnsupportedBackup",
    "WeakPassphrase",
    "WrongBackupKey",
]
