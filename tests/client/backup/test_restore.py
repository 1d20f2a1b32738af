"""Backup and restore through the client library over the real server app (in process):
history comes back, conversations are rejoined by external commit, new messages flow both
ways, a removed conversation is reported, and a bad backup or a live target writes nothing."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import httpx
import pytest

from doorless.client import (
    Client,
    ConversationStatus,
    MessageReceived,
    ProfileInUse,
    WeakPassphrase,
)
from doorless.client.backup import BackupCorrupt, BackupTruncated, WrongBackupKey

from ..harness import PASSPHRASE, network, take_events

pytestmark = pytest.mark.asyncio

BACKUP_PASSPHRASE = "violet anchor mango trellis"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (and the folder's siblings), with its bytes."""
    return {
        str(p.relative_to(folder.parent)): p.read_bytes()
        for p in sorted(folder.parent.rglob("*"))
        if p.is_file()
    }


async def test_restore_brings_back_history_and_rejoins(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        chat = await alice.start_direct("bob")
        team = await alice.create_group("team", ["bob", "carol"])
        await alice.send_text(chat.id, "before the backup")
        await net.sync_all(bob, carol)
        await bob.send_text(chat.id, "reply before the backup")
        await net.sync_all(alice)
        summary = await alice.create_backup(tmp_path / "alice.backup")
        assert summary.recovery_key is not None
        assert summary.conversations == 2 and summary.messages >= 2
        # After the backup, bob removes alice from the team.
        await bob.remove_members(team.id, ["alice"])
        await net.sync_all(alice, carol)
        await alice.close()
        net.clients.remove(alice)

        fresh = tmp_path / "profiles" / "alice-restored"
        steps: list[tuple[int, int | None]] = []
        report = await Client.restore_backup(
            fresh,
            tmp_path / "alice.backup",
            summary.recovery_key,
            PASSPHRASE,
            options=net.options(),
            progress=lambda done, total: steps.append((done, total)),
        )
        assert steps == [(1, 2), (2, 2)]
        assert report.username == "alice"
        assert report.rejoined == (chat.id,)
        assert [n.conversation_id for n in report.not_restored] == [team.id]
        assert "removed" in report.not_restored[0].reason

        again = await Client.open(fresh, PASSPHRASE, options=net.options())
        net.clients.append(again)
        old = [m.text for m in await again.history(chat.id)]
        assert old[:2] == ["before the backup", "reply before the backup"]
        team_view = await again.conversation(team.id)
        assert team_view.status is ConversationStatus.REMOVED
        assert team_view.name == "team"

        await net.sync_all(bob)
        take_events(bob)
        await again.send_text(chat.id, "after the restore")
        await net.sync_all(bob)
        got = [e.text for e in take_events(bob) if isinstance(e, MessageReceived)]
        assert got == ["after the restore"]
        await bob.send_text(chat.id, "welcome back")
        await again.sync()
        assert [m.text for m in await again.history(chat.id)][-1] == "welcome back"


async def test_bad_backups_write_nothing(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        chat = await alice.start_direct((await net.user("bob")).username)
        await alice.send_text(chat.id, "canary")
        path = tmp_path / "b.backup"
        summary = await alice.create_backup(path, passphrase=BACKUP_PASSPHRASE)
        assert summary.recovery_key is None
        with pytest.raises(WeakPassphrase):
            await alice.create_backup(tmp_path / "weak.backup", passphrase="password1234")
        assert not (tmp_path / "weak.backup").exists()

        target = tmp_path / "restored" / "alice"
        target.parent.mkdir()
        data = path.read_bytes()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 1
        cases: list[tuple[bytes, type[Exception], str]] = [
            (bytes(flipped), BackupCorrupt, BACKUP_PASSPHRASE),
            (data[:-10], BackupTruncated, BACKUP_PASSPHRASE),
            (data, WrongBackupKey, "another passphrase entirely"),
            (os.urandom(300), BackupCorrupt, BACKUP_PASSPHRASE),
        ]
        for content, error, key in cases:
            bad = tmp_path / "bad.backup"
            bad.write_bytes(content)
            before = tree(target)
            with pytest.raises(error):
                await Client.restore_backup(target, bad, key, PASSPHRASE, options=net.options())
            assert tree(target) == before
            assert not target.exists()

        # A live profile is refused without force, and replaced with it.
        live = net.profile("alice")
        await alice.close()
        net.clients.remove(alice)
        before = tree(live)
        with pytest.raises(ProfileInUse):
            await Client.restore_backup(
                live, path, BACKUP_PASSPHRASE, PASSPHRASE, options=net.options()
            )
        assert tree(live) == before
        report = await Client.restore_backup(
            live, path, BACKUP_PASSPHRASE, PASSPHRASE, force=True, options=net.options()
        )
        assert report.rejoined == (chat.id,)


async def test_attachments_come_back_encrypted(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        secret = b"attachment canary " + os.urandom(8).hex().encode()
        await bob.sync()
        await bob.send_file(chat.id, secret * 100, name="notes.txt")
        await alice.sync()
        path = tmp_path / "with-files.backup"
        summary = await alice.create_backup(path, attachments=True)
        assert summary.attachments == 1
        without = await alice.create_backup(tmp_path / "without.backup")
        assert without.attachments == 0
        await alice.close()
        net.clients.remove(alice)

        fresh = tmp_path / "profiles" / "alice-restored"
        assert summary.recovery_key is not None
        report = await Client.restore_backup(
            fresh, path, summary.recovery_key, PASSPHRASE, options=net.options()
        )
        assert report.attachments == 1
        # Kept as the server had it: encrypted (I6), nothing of the file in clear on disk.
        assert all(secret not in data for data in tree(fresh).values())
        again = await Client.open(fresh, PASSPHRASE, options=net.options())
        net.clients.append(again)

        async def no_server(*args: object, **kwargs: object) -> bytes:
            raise AssertionError("the restored copy should be used")

        again._transport.download_attachment = no_server  # type: ignore[method-assign]
        (message,) = [m for m in await again.history(chat.id) if m.file is not None]
        assert await again.download(message) == secret * 100


class NoGroupInfo(httpx.AsyncBaseTransport):
    """The in-process server, except that the GroupInfo a rejoin needs cannot be reached."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/info"):
            raise httpx.ConnectError("unreachable", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_conversation_not_rejoined_yet_is_rejoined_later(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await alice.send_text(chat.id, "before")
        await bob.sync()
        summary = await alice.create_backup(tmp_path / "a.backup")
        await alice.close()
        net.clients.remove(alice)
        assert summary.recovery_key is not None

        fresh = tmp_path / "profiles" / "alice-restored"
        options = net.options()
        assert options.http_transport is not None
        report = await Client.restore_backup(
            fresh,
            tmp_path / "a.backup",
            summary.recovery_key,
            PASSPHRASE,
            options=dataclasses.replace(
                options, http_transport=NoGroupInfo(options.http_transport)
            ),
        )
        assert report.rejoined == ()
        (later,) = report.not_restored
        assert later.conversation_id == chat.id and "could not rejoin" in later.reason

        again = await Client.open(fresh, PASSPHRASE, options=net.options())
        net.clients.append(again)
        assert (await again.conversation(chat.id)).status is ConversationStatus.ACTIVE
        # Sending meets the group's newer epoch: the device rejoins, then the message goes.
        await again.send_text(chat.id, "after a late rejoin")
        take_events(bob)
        await bob.sync()
        got = [e.text for e in take_events(bob) if isinstance(e, MessageReceived)]
        assert got == ["after a late rejoin"]
        assert "bob" in (await again.conversation(chat.id)).members
