"""Three users, one with two devices, on the real server process over loopback: direct and
group messages and a 5 MB file arrive at every device, in order, exactly once, across a
``kill -9`` and a restart of the server and restarts of the clients; afterwards no byte the
server wrote or logged, and no byte of any profile folder, contains a canary (I1, I6).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from doorless.client import Client, MessageReceived, MessageState

from .helpers import Devices, ServerProcess, scan

pytestmark = pytest.mark.asyncio

FILE_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class Sent:
    conversation_id: str
    message_id: str
    sender: str  # device name
    text: str | None
    sha256: str | None


class Canaries:
    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self, label: str) -> str:
        value = f"canary-{label}-{secrets.token_hex(12)}"
        self.values.append(value)
        return value


async def test_messages_and_files_reach_every_device_once_in_order(
    server: ServerProcess, tmp_path: Path
) -> None:
    canary = Canaries()
    net = Devices(server.url, tmp_path / "profiles")
    sent: list[Sent] = []
    members: dict[str, set[str]] = {}

    async def text(device: str, conversation_id: str, label: str) -> None:
        body = f"{label}: {canary(label)}"
        info = await net.clients[device].send_text(conversation_id, body)
        sent.append(Sent(conversation_id, info.message_id, device, body, None))

    try:
        await net.account("alice")
        await net.account("bob1", "bob")
        await net.account("carol")
        await net.link("bob1", "bob2")
        alice = net.clients["alice"]

        direct = await alice.start_direct("bob")
        group_name = f"group canary-group-name-{secrets.token_hex(12)}"
        group = await alice.create_group(group_name, ["bob", "carol"])
        members[direct.id] = {"alice", "bob1", "bob2"}
        members[group.id] = {"alice", "bob1", "bob2", "carol"}
        assert len(direct.devices) == 3 and len(group.devices) == 4
        await net.sync_all()

        await text("alice", direct.id, "direct-1")
        await text("bob1", group.id, "group-1")
        await text("carol", group.id, "group-2")
        await text("bob2", direct.id, "direct-2")  # bob1 sees what bob2 sent
        await net.clients["bob2"].sync()

        # kill -9 the server; a message sent meanwhile stays pending, then goes out.
        server.kill()
        pending = await net.clients["carol"].send_text(group.id, "while down")
        assert pending.state is MessageState.PENDING
        sent.append(Sent(group.id, pending.message_id, "carol", "while down", None))
        server.start()
        await net.clients["carol"].sync()
        (carol_view,) = [
            m
            for m in await net.clients["carol"].history(group.id)
            if m.message_id == pending.message_id
        ]
        assert carol_view.state is MessageState.SENT

        # Clients restart before they fetched anything of the above.
        await net.restart("bob1")
        await net.restart("carol")

        # A 5 MB file with canaries inside and in its name, from the device whose user has
        # another device (so that one receives it too).
        file_canary = canary("file").encode()
        data = bytearray(os.urandom(FILE_SIZE))
        for offset in (0, FILE_SIZE // 2, FILE_SIZE - len(file_canary)):
            data[offset : offset + len(file_canary)] = file_canary
        payload = bytes(data)
        name = f"{canary('file-name')}.bin"
        info = await net.clients["bob1"].send_file(group.id, payload, name=name)
        digest = hashlib.sha256(payload).hexdigest()
        sent.append(Sent(group.id, info.message_id, "bob1", None, digest))
        await text("alice", group.id, "group-3")

        server.restart()  # a clean restart this time
        await net.restart("alice")
        await text("alice", direct.id, "direct-3")
        await net.sync_all(rounds=3)

        # --- every device: every message of the others, in order, exactly once ------------
        for device, client in net.clients.items():
            for conv_id, devices in members.items():
                if device not in devices:
                    continue
                history = await client.history(conv_id, limit=None)
                ours = [s for s in sent if s.conversation_id == conv_id]
                # Incoming: the server's order. (A device's own messages sit where it sent
                # them, which may be before incoming ones it had not fetched yet.)
                incoming = [m for m in history if not m.outgoing]
                want_in = [s for s in ours if s.sender != device]
                assert [m.message_id for m in incoming] == [s.message_id for s in want_in]
                outgoing = [m.message_id for m in history if m.outgoing]
                assert outgoing == [s.message_id for s in ours if s.sender == device]
                by_id = {s.message_id: s for s in ours}
                for m in history:
                    s = by_id[m.message_id]
                    if s.text is not None:
                        assert m.text == s.text
                    else:
                        assert m.file is not None and m.file.sha256 == s.sha256
                        assert m.file.name == name and m.file.size == FILE_SIZE
                        if not m.outgoing:
                            assert await client.download(m) == payload, device
            assert await client.sync() == 0, device  # nothing left, nothing twice
    finally:
        await net.close_all()

    # Each device was told about each incoming message exactly once (across its restarts).
    for device, events in net.events.items():
        told = Counter(e.message.message_id for e in events if isinstance(e, MessageReceived))
        expected = {
            s.message_id
            for s in sent
            if s.sender != device and device in members[s.conversation_id]
        }
        assert set(told) == expected, device
        assert all(n == 1 for n in told.values()), (device, told)

    # --- I1: no canary in any byte the server wrote or logged; I6: nor in any profile ------
    server.stop()
    needles = [c.encode() for c in canary.values]
    assert server.log_path.stat().st_size > 0
    assert scan([server.data_dir, server.log_path], needles) == []
    # The group's name is in its GroupContext, which the server validates (PublicMessage
    # handshakes, docs/threat-model.md "Validated groups"): in its database, never its log.
    assert scan([server.log_path], [group_name.encode()]) == []
    profiles = [net.profile(name) for name in net.events]
    assert all(any(p.iterdir()) for p in profiles)
    assert scan(profiles, [*needles, group_name.encode()]) == []


async def test_a_restarted_client_resends_what_was_pending(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A message queued while the server was down survives the sender's restart (outbox in
    the encrypted store) and arrives once."""
    net = Devices(server.url, tmp_path / "profiles")
    try:
        alice = await net.account("alice")
        bob = await net.account("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()
        server.kill()
        queued = await alice.send_text(chat.id, "queued before a double restart")
        assert queued.state is MessageState.PENDING
        alice = await net.restart("alice")
        server.start()
        await alice.sync()
        await bob.sync()
        got = [m.text for m in await bob.history(chat.id)]
        assert got == ["queued before a double restart"]
        assert await bob.sync() == 0
        client: Client = alice
        assert [m.state for m in await client.history(chat.id)] == [MessageState.SENT]
    finally:
        await net.close_all()
