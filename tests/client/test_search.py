"""`Client.search` (doorless.client.search): snippets and match offsets, a linked device's
index, the conversation filter, and refused searches that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client import InvalidSearchQuery, UnknownConversation
from doorless.client.search import split_snippet

from .harness import network


@pytest.mark.parametrize(
    ("marked", "text", "matches"),
    [
        ("plain", "plain", ()),
        ("\x02a\x03 b \x02c\x03", "a b c", ((0, 1), (4, 5))),
        ("…x \x02héllo\x03", "…x héllo", ((3, 8),)),
        ("\x02\x03empty", "empty", ()),
        ("\x03stray\x02", "stray", ()),
    ],
)
def test_split_snippet(marked: str, text: str, matches: tuple[tuple[int, int], ...]) -> None:
    assert split_snippet(marked) == (text, matches)


@pytest.mark.asyncio
async def test_search_on_every_device_and_in_one_conversation(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        bob2 = await net.link(bob, "bob2")
        direct = await alice.start_direct("bob")
        group = await alice.create_group("team", ["bob"])
        await alice.send_text(direct.id, "Ünïcode pizza tonight?")
        await alice.send_text(group.id, "pizza for the team")
        await net.sync_all()
        await bob.send_text(direct.id, "pizza pizza yes")
        await net.sync_all()

        for client in (alice, bob, bob2):
            results = await client.search("pizza")
            assert sorted(r.message.text or "" for r in results) == [
                "pizza for the team",
                "pizza pizza yes",
                "Ünïcode pizza tonight?",
            ]
            assert results[0].message.text == "pizza pizza yes"  # the best match first
            first = results[0]
            assert [first.snippet[s:e] for s, e in first.matches] == ["pizza", "pizza"]
        (hit,) = await bob2.search("unicode")
        assert hit.message.sender.user == "alice" and hit.message.conversation_id == direct.id
        only = await alice.search("pizza", conversation_id=group.id)
        assert [r.message.text for r in only] == ["pizza for the team"]
        assert len(await alice.search("pizza", limit=1)) == 1
        assert await alice.search("pizza OR tonight", literal=True) == []

        with pytest.raises(InvalidSearchQuery):
            await alice.search("pizza AND")
        with pytest.raises(InvalidSearchQuery):
            await alice.search("pizza", limit=0)
        with pytest.raises(UnknownConversation):
            await alice.search("pizza", conversation_id="not hex")
        assert len(await alice.search("pizza")) == 3  # nothing changed
