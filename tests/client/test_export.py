"""`Client.export` (doorless.client.export): the complete local history of one
conversation, with its members' nicknames only."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client import UnknownConversation

from .harness import network

pytestmark = pytest.mark.asyncio


async def test_export_is_complete_and_in_order(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        direct = await alice.start_direct("bob")
        other = await alice.start_direct("carol")
        texts = [f"message {i}" for i in range(120)]  # more than history()'s default page
        for text in texts:
            await alice.send_text(direct.id, text)
        await alice.send_file(direct.id, b"file body", name="notes.txt")
        await alice.send_text(other.id, "not in the export")
        await alice.set_nickname("bob", "Bobby")
        await alice.set_nickname("carol", "Caz")
        await net.sync_all(bob, carol)

        snapshot = await alice.export(direct.id)
        assert snapshot.exported_by == alice.me
        assert snapshot.conversation.id == direct.id
        assert [m.text for m in snapshot.messages[:-1]] == texts
        assert snapshot.messages[-1].file is not None
        assert snapshot.messages[-1].file.name == "notes.txt"
        ids = [m.local_id for m in snapshot.messages]
        assert ids == sorted(ids)
        assert snapshot.nicknames == {"bob": "Bobby"}  # only this conversation's members
        theirs = await bob.export(direct.id)
        assert [m.message_id for m in theirs.messages] == [m.message_id for m in snapshot.messages]
        assert theirs.nicknames == {}
        with pytest.raises(UnknownConversation):
            await alice.export("00" * 32)
