"""The profile folder and its database connection: file names, the single-writer ``flock``,
opening SQLCipher with its key and pragmas, recovering an interrupted creation or key change,
and re-encrypting into a new file."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import sqlcipher3

from doorless.client.keys import (
    Argon2Params,
    KeyHeader,
    KeySource,
    ProfileCorrupt,
    StoreKey,
    encode_header,
    fsync_dir,
    read_header,
    resolve_key_source,
    write_file_atomically,
)
from doorless.client.store.errors import ProfileLocked, StoreError, WrongPassphrase
from doorless.client.store.schema import migrate
from doorless.errors import ConfigurationError

HEADER_NAME = "key.json"


PENDING_HEADER_NAME = "key.json.new"


DB_NAME = "store.db"


REKEY_DB_NAME = "store.db.rekey"


LOCK_NAME = "lock"


class ProfileLock:
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


def sql_key(key: StoreKey) -> str:
    # A raw key in SQLCipher's blob-literal form skips its PBKDF2 (the key is already derived).
    return f"x'{key.value.hex()}'"


def remove_file(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def db_files(db_path: Path) -> list[Path]:
    return [db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm", "-journal"))]


def connect(db_path: Path, key: StoreKey) -> Any:
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
        conn.execute(f'PRAGMA key = "{sql_key(key)}"')
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


def make_profile_dir(profile: Path) -> None:
    try:
        profile.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigurationError(f"cannot create the profile folder {profile}: {e}") from e
    if not profile.is_dir():
        raise ConfigurationError(f"{profile} is not a folder")


def export(conn: Any, path: Path, key: StoreKey) -> None:
    """Copy the whole database into a new file at ``path`` encrypted under ``key``."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    try:
        conn.execute("ATTACH DATABASE ? AS rekeyed KEY ?", (str(path), sql_key(key)))
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


def unlock(
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
        for stale in [*db_files(db_path), *db_files(profile / REKEY_DB_NAME)]:
            remove_file(stale)
        write_file_atomically(pending_path, encode_header(header))
        conn = connect(db_path, key)
        try:
            migrate(conn)
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
        conn = connect(db_path, source.unlock(header))
    except (WrongPassphrase, ConfigurationError) as first:
        if pending is None:
            raise
        # A key change was interrupted after the new file replaced the old one: the pending
        # header is the right one. If it does not open the store either, report the first
        # error.
        try:
            pending_source = source if type(pending) is type(header) else source_for(pending)
            conn = connect(db_path, pending_source.unlock(pending))
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
        remove_file(pending_path)
    try:
        for stale in db_files(profile / REKEY_DB_NAME):
            remove_file(stale)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


__all__ = [
    "DB_NAME",
    "HEADER_NAME",
    "LOCK_NAME",
    "PENDING_HEADER_NAME",
    "REKEY_DB_NAME",
    "ProfileLock",
    "connect",
    "db_files",
    "export",
    "make_profile_dir",
    "remove_file",
    "sql_key",
    "unlock",
]
