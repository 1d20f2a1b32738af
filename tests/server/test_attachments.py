"""Encrypted attachments: opaque blobs, size limit, expiry, progress, crash leftovers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from doorless.client.errors import InvalidRequest, NotFound, PayloadTooLarge
from doorless.server.app import sweep
from doorless.server.blobs import STALE_AFTER

from .helpers import FakeClock, Harness, make_config, running

pytestmark = pytest.mark.asyncio


async def test_upload_download_with_progress(server: Harness, tmp_path: Path) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    blob = os.urandom(200_000)
    seen: list[tuple[int, int | None]] = []
    info = await alice.upload_attachment(
        blob, progress=lambda done, total: seen.append((done, total))
    )
    assert info.size == len(blob)
    assert info.expires_at == server.ctx.now() + server.config.attachment_ttl
    assert seen[-1] == (len(blob), len(blob)) and len(seen) > 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    down: list[tuple[int, int | None]] = []
    assert (
        await bob.download_attachment(info.attachment_id, progress=lambda d, t: down.append((d, t)))
        == blob
    )
    assert down[-1] == (len(blob), len(blob))

    target = tmp_path / "out.bin"
    assert await bob.download_attachment_to(info.attachment_id, target) == len(blob)
    assert target.read_bytes() == blob
    assert not (tmp_path / "out.bin.part").exists()


async def test_upload_from_a_file(server: Harness, tmp_path: Path) -> None:
    alice = await server.user("alice")
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(70_000))
    info = await alice.upload_attachment(source)
    assert await alice.download_attachment(info.attachment_id) == source.read_bytes()


async def test_size_limit(data_dir: Path, clock: FakeClock) -> None:
    async with running(make_config(data_dir, max_attachment_size=1000), clock) as server:
        alice = await server.user("alice")
        before_db, before_files = server.db_dump(), server.files()
        with pytest.raises(PayloadTooLarge):
            await alice.upload_attachment(b"x" * 1001)

        # Without a Content-Length the limit is enforced while streaming.
        async def body() -> AsyncIterator[bytes]:
            for _ in range(11):
                yield b"y" * 100

        async with server.http() as http:
            r = await http.post(
                "/v1/attachments",
                headers={"Authorization": f"Bearer {alice._token}"},
                content=body(),
            )
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert server.db_dump() == before_db
        assert server.files() == before_files  # the partial upload is gone
        await alice.upload_attachment(b"x" * 1000)


async def test_empty_attachment_is_refused(server: Harness) -> None:
    alice = await server.user("alice")
    with pytest.raises(InvalidRequest):
        await alice.upload_attachment(b"")


async def test_expiry_deletes_row_and_blob(server: Harness) -> None:
    alice = await server.user("alice")
    info = await alice.upload_attachment(b"ciphertext" * 10)
    blob_path = server.config.attachments_dir / info.attachment_id
    assert blob_path.exists()

    server.clock.advance(server.config.attachment_ttl)
    with pytest.raises(NotFound):  # expired: gone even before the sweep runs
        await alice.download_attachment(info.attachment_id)
    await sweep(server.ctx)
    assert not blob_path.exists()
    assert info.attachment_id not in "\n".join(server.db_dump())


async def test_unknown_attachment(server: Harness) -> None:
    alice = await server.user("alice")
    with pytest.raises(NotFound):
        await alice.download_attachment("0" * 32)


async def test_leftovers_of_a_crash_are_removed_at_start(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir)
    async with running(config, clock) as server:
        alice = await server.user("alice")
        kept = await alice.upload_attachment(b"kept")
    orphan = config.attachments_dir / ("ab" * 16)  # renamed into place, row never written
    orphan.write_bytes(b"orphan")
    partial = config.attachments_dir / "tmp" / ("cd" * 16)  # upload cut short
    partial.write_bytes(b"partial")
    stale = clock() - STALE_AFTER - 1  # untouched for longer than any upload takes
    for path in (orphan, partial, config.attachments_dir / kept.attachment_id):
        os.utime(path, (stale, stale))
    async with running(config, clock) as server:
        assert not orphan.exists() and not partial.exists()
        assert (config.attachments_dir / kept.attachment_id).exists()


async def test_start_up_keeps_the_uploads_of_other_nodes(data_dir: Path, clock: FakeClock) -> None:
    """Nodes sharing an attachment directory: one starting up must not delete another's upload
    in progress (a file in tmp/, or a blob renamed whose row is not committed yet)."""
    config = make_config(data_dir)
    async with running(config, clock):
        pass
    writing = config.attachments_dir / "tmp" / ("cd" * 16)  # another node is streaming it
    writing.write_bytes(b"partial")
    renamed = config.attachments_dir / ("ab" * 16)  # its row is being committed
    renamed.write_bytes(b"blob")
    now = clock()
    for path in (writing, renamed):
        os.utime(path, (now, now))
    async with running(config, clock):
        assert writing.exists() and renamed.exists()


async def test_attachments_need_a_token(server: Harness) -> None:
    async with server.http() as http:
        assert (await http.post("/v1/attachments", content=b"x")).status_code == 401
        assert (await http.get("/v1/attachments/" + "0" * 32)).status_code == 401
