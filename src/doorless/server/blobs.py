"""Attachment blobs on disk: opaque (client-encrypted) bytes, one file per attachment.

An upload streams into ``attachments/tmp/`` while counting bytes, is fsynced, then renamed to
``attachments/<id>``; only then is its database row written. So a crash leaves at worst a file
without a row, which `BlobStore.remove_orphans` deletes at the next start.

Several server processes may share one attachment directory (over one database). A process
starting up must not take another's upload in progress (a file in ``tmp/``, or a blob renamed
but whose row is not committed yet) for a crash's leftover: start-up clean-up only deletes
files untouched for `STALE_AFTER` seconds (an upload writes its file continuously and commits
its row right after the rename).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from doorless.errors import ConfigurationError, RemoteError

ATTACHMENT_ID_PATTERN = r"^[0-9a-f]{32}$"
_ID_RE = re.compile(ATTACHMENT_ID_PATTERN)
CHUNK = 64 * 1024
STALE_AFTER = 3600.0  # seconds without a write after which a file without a row is a leftover


class BlobTooLarge(RemoteError):
    """An upload went past its size limit (the partial file is deleted)."""


class BlobStore:
    def __init__(
        self,
        directory: Path,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._tmp = directory / "tmp"
        self._stale_after = stale_after
        self._clock = clock

    def _stale(self, path: Path) -> bool:
        try:
            return path.stat().st_mtime < self._clock() - self._stale_after
        except FileNotFoundError:
            return False

    def prepare(self) -> None:
        """Create the directories and drop unfinished uploads (stale ones only: another
        process may be writing the others)."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            if self._stale(leftover):
                leftover.unlink(missing_ok=True)

    def remove_orphans(self, known: set[str]) -> int:
        """Delete stale blobs without a row in ``known``; returns how many."""
        removed = 0
        for path in self.directory.iterdir():
            if path.is_file() and path.name not in known and self._stale(path):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _path(self, attachment_id: str) -> Path:
        if _ID_RE.fullmatch(attachment_id) is None:  # never let an id name another path
            raise ConfigurationError("invalid attachment id")
        return self.directory / attachment_id

    async def write(self, chunks: AsyncIterator[bytes], limit: int) -> tuple[str, int]:
        """Store a stream as a new blob; returns ``(attachment_id, size)``.

        Raises `BlobTooLarge` (after deleting the partial file) past ``limit`` bytes.
        """
        attachment_id = secrets.token_hex(16)
        tmp = self._tmp / attachment_id
        size = 0
        f = await asyncio.to_thread(tmp.open, "xb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(f"attachment is larger than {limit} bytes")
                if chunk:
                    await asyncio.to_thread(f.write, chunk)
            await asyncio.to_thread(_sync_and_close, f)
            await asyncio.to_thread(os.replace, tmp, self._path(attachment_id))
            await asyncio.to_thread(_fsync_dir, self.directory)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return attachment_id, size

    def open(self, attachment_id: str) -> BinaryIO | None:
        try:
            return self._path(attachment_id).open("rb")
        except FileNotFoundError:
            return None

    def delete(self, attachment_ids: Iterable[str]) -> None:
        for attachment_id in attachment_ids:
            with contextlib.suppress(ValueError):
                self._path(attachment_id).unlink(missing_ok=True)


def _sync_and_close(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def read_chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    """Stream an open blob, closing it at the end (also if the client goes away)."""
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()
