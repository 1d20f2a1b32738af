"""Attachment endpoints: streaming uploads and downloads of encrypted files, with progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from doorless.client.errors import BadResponse, ServerUnreachable, Unauthorized
from doorless.client.transport.http import HttpBase, error_of
from doorless.client.transport.parsing import check_path_value
from doorless.client.transport.types import AttachmentInfo, ProgressCallback

_CHUNK = 64 * 1024


class AttachmentEndpoints(HttpBase):
    """Uploading and downloading attachments (ciphertext only)."""

    async def upload_attachment(
        self, data: bytes | Path, *, progress: ProgressCallback | None = None
    ) -> AttachmentInfo:
        """Upload an (already encrypted) blob from memory or a file."""
        total = len(data) if isinstance(data, bytes) else data.stat().st_size

        async def body() -> AsyncIterator[bytes]:
            done = 0
            async for chunk in _chunks_of(data):
                done += len(chunk)
                yield chunk
                if progress is not None:
                    progress(done, total)

        f = await self._json(
            "POST",
            "/v1/attachments",
            "attachment",
            content=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
        )
        return AttachmentInfo(f.text("attachment_id"), f.integer("size"), f.integer("expires_at"))

    async def download_attachment(
        self, attachment_id: str, *, progress: ProgressCallback | None = None
    ) -> bytes:
        parts: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            parts.append(chunk)

        await self._download(attachment_id, sink, progress)
        return b"".join(parts)

    async def download_attachment_to(
        self, attachment_id: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream a blob into ``path`` (replaced only when complete); returns its size."""
        tmp = path.with_name(path.name + ".part")
        f: BinaryIO = await asyncio.to_thread(tmp.open, "wb")
        try:

            async def sink(chunk: bytes) -> None:
                await asyncio.to_thread(f.write, chunk)

            size = await self._download(attachment_id, sink, progress)
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(tmp.replace, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return size

    async def _download(
        self,
        attachment_id: str,
        sink: Callable[[bytes], Awaitable[None]],
        progress: ProgressCallback | None,
    ) -> int:
        check_path_value(
            len(attachment_id) == 32 and all(c in "0123456789abcdef" for c in attachment_id),
            "attachment id",
        )
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {await self._ensure_token()}"}
            try:
                async with self._http.stream(
                    "GET", f"/v1/attachments/{attachment_id}", headers=headers
                ) as response:
                    if response.status_code == 401 and attempt == 0:
                        self._token = None
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_of(response)
                    total_header = response.headers.get("content-length")
                    total = int(total_header) if total_header and total_header.isdigit() else None
                    done = 0
                    async for chunk in response.aiter_bytes(_CHUNK):
                        await sink(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                    if total is not None and done != total:
                        raise BadResponse("attachment download ended early")
                    return done
            except httpx.TransportError as exc:
                raise ServerUnreachable(
                    f"attachment download failed ({type(exc).__name__})"
                ) from None
        raise Unauthorized(401, "unauthorized", "token refused twice", {})


async def _chunks_of(data: bytes | Path) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        for i in range(0, len(data), _CHUNK):
            yield data[i : i + _CHUNK]
        return
    f = await asyncio.to_thread(data.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk
    finally:
        f.close()


__all__ = ["AttachmentEndpoints"]
