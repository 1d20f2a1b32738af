"""The open store of one profile (`ProfileStore`): transactions, the worker thread async
code runs them on, maintenance (expiry, checkpoint, vacuum, integrity, key change), closing."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import sqlcipher3

from doorless.client.keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    KeySource,
    encode_header,
    fsync_dir,
    resolve_key_source,
    write_file_atomically,
)
from doorless.client.store.connection import (
    DB_NAME,
    HEADER_NAME,
    LOCK_NAME,
    PENDING_HEADER_NAME,
    REKEY_DB_NAME,
    ProfileLock,
    connect,
    db_files,
    export,
    make_profile_dir,
    remove_file,
    unlock,
)
from doorless.client.store.errors import StoreError
from doorless.client.store.transaction import Transaction
from doorless.errors import StateError

P = ParamSpec("P")
T = TypeVar("T")


class ProfileStore:
    """The open, locked, decrypted store of one profile. Create with `ProfileStore.open`."""

    def __init__(self, profile: Path, conn: Any, lock: ProfileLock) -> None:
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
        make_profile_dir(profile)
        lock = ProfileLock(profile / LOCK_NAME, lock_timeout)
        try:
            conn = unlock(profile, passphrase, argon2, interactive, environ)
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
            for stale in db_files(rekey_path):
                remove_file(stale)
            try:
                export(conn, rekey_path, key)
                write_file_atomically(pending_path, encode_header(header))
                self.checkpoint()
            except BaseException:
                for stale in [pending_path, *db_files(rekey_path)]:
                    remove_file(stale)
                raise
            # From here the old connection is gone: any failure closes the store.
            self._conn = None
            conn.close()
            try:
                wal = db_path.with_name(db_path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise StoreError("the store's WAL was not emptied; key not changed")
                for stale in db_files(db_path)[1:]:
                    remove_file(stale)
                os.replace(rekey_path, db_path)
                fsync_dir(self.profile)
                os.replace(pending_path, self.profile / HEADER_NAME)
                fsync_dir(self.profile)
                self._conn = connect(db_path, key)
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


__all__ = ["ProfileStore"]
