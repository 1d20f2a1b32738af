"""Rich messages over the real server app (in process): every new message is a MIMI container;
replies, mentions, reactions, edits, deletes, read receipts and typing notices, the rules
receivers apply (only the sender edits or deletes), the old payload kinds still readable,
reports of MIMI messages, and padding to size buckets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from doorless.client import (
    ChangeKind,
    Client,
    DeliveryFailed,
    FailureReason,
    MessageChanged,
    MessageReceived,
    NotYourMessage,
    ReactionInfo,
    ReadUpTo,
    Typing,
    UnknownMessage,
    outbox,
)
from doorless.client.core import PADDING_BUCKETS
from doorless.client.rich_inbox import refused_counts
from doorless.codec import decode
from doorless.content import SALT_SIZE
from doorless.mls.framing import MLSMessage, PrivateMessage
from doorless.wire import rich
from doorless.wire.payload import content_payload, text_payload

from .harness import network, now_ms, of_type, take_events

pytestmark = pytest.mark.asyncio


async def _three(net: Any) -> tuple[Client, Client, Client, str]:
    alice = await net.user("alice")
    bob = await net.user("bob")
    carol = await net.user("carol")
    group = await alice.create_group("team", ["bob", "carol"])
    await net.sync_all()
    for c in (alice, bob, carol):
        take_events(c)
    return alice, bob, carol, group.id


async def test_reply_mention_react_edit_delete(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, gid = await _three(net)
        first = await alice.send_text(gid, "lunch @bob? not @dave")
        assert first.text == "lunch @bob? not @dave"
        await net.sync_all(bob, carol)
        (got,) = of_type(take_events(bob), MessageReceived)
        assert got.message.message_id == first.message_id
        assert got.text == "lunch @bob? not @dave"
        assert got.message.mentions == ("bob",) and got.message.mentions_me
        carol_first = of_type(take_events(carol), MessageReceived)[0].message
        assert carol_first.mentions == ("bob",) and not carol_first.mentions_me

        answer = await bob.reply(first.message_id, "yes")
        await bob.react(first.message_id, "👍")
        await carol.react(first.message_id, "🎉")
        await net.sync_all(alice, bob, carol)
        events = take_events(alice)
        (reply,) = of_type(events, MessageReceived)
        assert reply.message.reply_to == first.message_id and reply.text == "yes"
        changes = [(e.change, e.by.user, e.emoji) for e in of_type(events, MessageChanged)]
        assert changes == [
            (ChangeKind.REACTED, "bob", "👍"),
            (ChangeKind.REACTED, "carol", "🎉"),
        ]
        [stored, stored_reply] = await carol.history(gid)
        assert stored.reactions == (ReactionInfo("bob", "👍"), ReactionInfo("carol", "🎉"))
        assert stored_reply.reply_to == first.message_id
        assert [e.change for e in of_type(take_events(bob), MessageChanged)] == [
            ChangeKind.REACTED  # carol's; bob's own reaction is applied when it is sent
        ]
        take_events(carol)

        await bob.react(first.message_id, "👍", remove=True)
        with pytest.raises(UnknownMessage):
            await bob.react(first.message_id, "🙈", remove=True)  # never reacted so
        await alice.edit(first.message_id, "lunch at 1 @carol?")
        await net.sync_all(alice, bob, carol)
        expected = {  # bob's own un-reaction was applied when he sent it
            "bob": [ChangeKind.EDITED],
            "carol": [ChangeKind.UNREACTED, ChangeKind.EDITED],
        }
        for c in (bob, carol):
            kinds = [e.change for e in of_type(take_events(c), MessageChanged)]
            assert kinds == expected[c.username]
            [m, _] = await c.history(gid)
            assert (m.text, m.edited, m.mentions) == ("lunch at 1 @carol?", True, ("carol",))
            assert m.reactions == (ReactionInfo("carol", "🎉"),)
            history = await c.edit_history(first.message_id)
            assert [v.body for v in history] == [b"lunch @bob? not @dave"]

        with pytest.raises(NotYourMessage):
            await bob.edit(first.message_id, "mine now")
        with pytest.raises(NotYourMessage):
            await bob.delete(first.message_id)

        await alice.delete(first.message_id)
        await net.sync_all(alice, bob, carol)
        for c in (alice, bob, carol):
            [m, r] = await c.history(gid)
            assert m.deleted and m.text is None and m.reactions == ()
            assert r.text == "yes" and r.reply_to == first.message_id
            assert await c.edit_history(first.message_id) == []
        (deleted,) = of_type(take_events(bob), MessageChanged)
        assert deleted.change is ChangeKind.DELETED and deleted.message.text is None
        with pytest.raises(UnknownMessage):
            await bob.react(first.message_id, "👍")  # a deleted message takes no reaction
        assert answer.reply_to is None or answer.reply_to == first.message_id


async def test_edit_or_delete_by_another_user_is_refused(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, gid = await _three(net)
        sent = await alice.send_text(gid, "original words")
        await net.sync_all()
        meta = await alice._tx(lambda tx: tx.rich_by_mimi_id(_mimi(tx, sent.message_id)))
        assert meta is not None
        # Bob's client would refuse; a modified client sends the containers anyway.
        core = bob._core
        salt = os.urandom(SALT_SIZE)
        members = frozenset({"alice", "bob", "carol"})
        gbytes = bytes.fromhex(gid)
        for content in (
            rich.edit(meta.mimi_id, "forged", salt=salt, members=members),
            rich.delete(meta.mimi_id, salt=os.urandom(SALT_SIZE)),
        ):
            await outbox.send_payload(core, gbytes, content_payload(content, 1), shown=None)
        for c in (alice, carol):
            take_events(c)
        await net.sync_all(alice, carol)
        for c in (alice, carol):
            events = take_events(c)
            failed = of_type(events, DeliveryFailed)
            assert [f.reason for f in failed] == [FailureReason.NOT_AUTHOR] * 2
            assert all(f.sender is not None and f.sender.user == "bob" for f in failed)
            assert of_type(events, MessageChanged) == []
            [m] = await c.history(gid)
            assert (m.text, m.edited, m.deleted) == ("original words", False, False)
            assert await c._tx(refused_counts) == {"NotAuthor": 2}


def _mimi(tx: Any, message_id: str) -> bytes:
    message = tx.get_message_by_server_id(message_id)
    meta = tx.get_rich(message.local_id)
    return bytes(meta.mimi_id)


async def test_receipts_and_typing_and_switching_them_off(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, gid = await _three(net)
        one = await alice.send_text(gid, "one")
        two = await alice.send_text(gid, "two")
        await net.sync_all(bob, carol)
        assert await bob.typing(gid, True)
        assert await bob.mark_read(two.message_id)
        assert await carol.mark_read(one.message_id)
        await net.sync_all(alice)
        events = take_events(alice)
        assert [(e.user.user, e.active) for e in of_type(events, Typing)] == [("bob", True)]
        reads = of_type(events, ReadUpTo)
        assert [(e.reader.user, e.message_id) for e in reads] == [
            ("bob", two.message_id),
            ("carol", one.message_id),
        ]
        assert await carol.mark_read(one.message_id)  # not further: no new event
        await net.sync_all(alice)
        assert of_type(take_events(alice), ReadUpTo) == []
        assert await alice.read_up_to(gid) == {"bob": two.message_id, "carol": one.message_id}

        quiet = await net.reopen(bob, read_receipts=False, typing_notices=False)
        assert not await quiet.mark_read(two.message_id)
        assert not await quiet.typing(gid, True)


async def test_old_payload_kinds_stay_readable(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, _, gid = await _three(net)
        # An older client sends kind 1 (text); the new one shows it, without MIMI features.
        old = await alice._send_payload(bytes.fromhex(gid), text_payload("from v1", 1_000))
        await net.sync_all(bob)
        (got,) = of_type(take_events(bob), MessageReceived)
        assert got.text == "from v1" and got.message.message_id == old.message_id
        assert got.message.reply_to is None and not got.message.edited
        with pytest.raises(UnknownMessage):
            await bob.reply(old.message_id, "cannot refer to it")


async def test_a_mimi_message_can_be_reported(tmp_path: Path) -> None:
    """The franking commitment covers the whole payload, so the container: the server checks
    a report of a MIMI message like any other."""
    async with network(tmp_path) as net:
        alice, bob, _, gid = await _three(net)
        sent = await alice.send_text(gid, "abusive words")
        await net.sync_all(bob)
        (receipt,) = await bob.report(sent.message_id, "harassment")
        assert receipt.message_id == sent.message_id and receipt.sender == "alice"


async def test_application_messages_are_padded_to_buckets(tmp_path: Path) -> None:
    """A reaction, a receipt, a typing notice and a short text are one size to the server."""
    async with network(tmp_path) as net:
        alice, bob, _, gid = await _three(net)
        sizes: list[int] = []
        send = bob._transport.send

        async def spy(data: bytes, *args: Any, **kwargs: Any) -> Any:
            message = decode(MLSMessage, data)
            if isinstance(message.body, PrivateMessage):
                sizes.append(len(message.body.ciphertext))
            return await send(data, *args, **kwargs)

        bob._transport.send = spy  # type: ignore[method-assign]
        first = await alice.send_text(gid, "hi")
        await net.sync_all(bob)
        await bob.send_text(gid, "ok, see you at the usual place at noon")
        await bob.react(first.message_id, "👍")
        await bob.mark_read(first.message_id)
        await bob.typing(gid, True)
        assert len(sizes) == 4
        assert len(set(sizes)) == 1, sizes
        await bob.send_text(gid, "x" * 2000)  # a longer text: the next bucket
        assert sizes[-1] > sizes[0]
        assert min(PADDING_BUCKETS) <= sizes[0] <= min(PADDING_BUCKETS) + 64


async def test_changes_of_unknown_messages_and_others_reactions_are_refused(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, gid = await _three(net)
        sent = await alice.send_text(gid, "react to me")
        await net.sync_all()
        await carol.react(sent.message_id, "👍")
        await net.sync_all()
        local_id = (await bob.history(gid))[0].local_id
        reaction = await bob._tx(lambda tx: tx.reactions_of([local_id]))
        assert [(r.sender_user, r.emoji) for r in reaction] == [("carol", "👍")]
        target = await bob._tx(lambda tx: _mimi(tx, sent.message_id))
        gbytes = bytes.fromhex(gid)
        nowhere = b"\x01" + bytes(31)
        for content in (
            rich.unreaction(reaction[0].mimi_id, target, salt=os.urandom(SALT_SIZE)),  # carol's
            rich.reaction(nowhere, "👀", salt=os.urandom(SALT_SIZE)),  # no such message
            rich.read_up_to(nowhere, salt=os.urandom(SALT_SIZE)),
        ):
            await outbox.send_payload(bob._core, gbytes, content_payload(content, 1), shown=None)
        for c in (alice, carol):
            take_events(c)
        await net.sync_all(alice, carol)
        for c in (alice, carol):
            failed = of_type(take_events(c), DeliveryFailed)
            assert [f.reason for f in failed] == [
                FailureReason.NOT_AUTHOR,
                FailureReason.UNKNOWN_TARGET,
                FailureReason.UNKNOWN_TARGET,
            ]
            [m] = await c.history(gid)
            assert m.reactions == (ReactionInfo("carol", "👍"),)
            assert await c._tx(refused_counts) == {"NotAuthor": 1, "UnknownTarget": 2}


async def test_disappearing_timer_travels_as_expires(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, _, gid = await _three(net)
        await alice.set_disappearing(gid, 3600)
        await net.sync_all()
        sent_at = now_ms()
        sent = await alice.send_text(gid, "gone in an hour")
        payload = await alice._tx(lambda tx: tx.get_pending_payload(sent.message_id))
        assert payload is None  # sent: the kept payload is gone
        await net.sync_all(bob)
        row = await bob._tx(lambda tx: tx.get_message_by_server_id(sent.message_id))
        assert row is not None and row.expires_at is not None
        assert sent_at + 3_600_000 - 60_000 <= row.expires_at <= now_ms() + 3_600_000


async def test_changes_crossing_a_delete_are_dropped_quietly(tmp_path: Path) -> None:
    """A reaction sent before its message's delete arrived is dropped at the sender, who
    deleted it already: not a failure (the sender's own delete is applied when sent)."""
    async with network(tmp_path) as net:
        alice, bob, _, gid = await _three(net)
        sent = await alice.send_text(gid, "oops")
        await net.sync_all(bob)
        await bob.react(sent.message_id, "😮")
        await alice.delete(sent.message_id)  # before alice received the reaction
        take_events(alice)
        await net.sync_all(alice, bob)
        assert of_type(take_events(alice), DeliveryFailed) == []
        [m] = await alice.history(gid)
        assert m.deleted and m.reactions == ()
        [m] = await bob.history(gid)
        assert m.deleted and m.reactions == ()
