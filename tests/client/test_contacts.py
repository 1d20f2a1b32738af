"""Local nicknames (doorless.client.contacts): what a nickname may be, and that it stays in
the profile (never sent), through the in-process harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client.contacts import MAX_NICKNAME_CHARS, check_nickname
from doorless.errors import ConfigurationError

from .harness import network


def test_nickname_is_normalised() -> None:
    assert check_nickname("  Bobby ") == "Bobby"
    assert check_nickname("Cafe\u0301") == "Café"  # NFC
    assert check_nickname("Zoë 🎉") == "Zoë 🎉"
    assert check_nickname("x" * MAX_NICKNAME_CHARS) == "x" * MAX_NICKNAME_CHARS


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "x" * (MAX_NICKNAME_CHARS + 1), "a\nb", "a\x1bb", "a\u202eb", "a\u200bb", "\ue000"],
)
def test_bad_nickname_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_nickname(bad)


@pytest.mark.asyncio
async def test_nicknames_stay_on_the_device(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await alice.send_text(chat.id, "hi")
        await bob.sync()
        (entry,) = await alice.contacts()
        assert (entry.username, entry.nickname, entry.conversations) == ("bob", None, (chat.id,))
        info = await alice.set_nickname("bob", "Bobby")
        assert info.nickname == "Bobby"
        assert await alice.nicknames() == {"bob": "Bobby"}
        assert (await alice.contact("bob")).nickname == "Bobby"
        with pytest.raises(ConfigurationError):
            await alice.set_nickname("alice", "me")
        with pytest.raises(ConfigurationError):
            await alice.contact("carol")
        before = await alice.nicknames()
        with pytest.raises(ConfigurationError):
            await alice.set_nickname("bob", "\u202e")
        assert await alice.nicknames() == before  # a refused nickname changes nothing
        await alice.send_text(chat.id, "still there")
        await bob.sync()
        assert await bob.nicknames() == {}
        assert (await alice.set_nickname("bob", None)).nickname is None
        assert await alice.nicknames() == {}
