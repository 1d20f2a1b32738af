"""Message requests, blocking and disappearing messages, end to end across devices (the real
server app in process, real clients; a user with two devices where it matters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.harness import of_type, take_events
from doorless.client import ConversationJoined, ConversationUpdated, MessageReceived
from doorless.client.safety import DISAPPEARING_EXTENSION, DisappearingTimer
from doorless.codec import decode
from doorless.errors import ConfigurationError
from doorless.mls.extensions import find_extension

from .harness import SafetyNetwork, canary, decrypted_store, raw_files, safety_network

pytestmark = pytest.mark.asyncio


async def queued(net: SafetyNetwork, device_id: str) -> int:
    """How many messages the server holds for a device."""
    return len(await net.ctx.storage.fetch(device_id, 0, 1000))


# --- message requests ---------------------------------------------------------------------------


async def test_a_first_message_from_a_stranger_is_a_request_on_every_device(
    tmp_path: Path,
) -> None:
    async with safety_network(tmp_path) as net:
        bob1 = await net.user("bob", "bob-phone")
        bob2 = await net.link(bob1, "bob-laptop")
        carol = await net.user("carol")
        chat = await carol.start_direct("bob")
        await carol.send_text(chat.id, "hi, we have not met")
        for bob in (bob1, bob2):
            await bob.sync()
            (request,) = await bob.requests()
            assert request.id == chat.id and request.request_from == "carol"
            assert request.is_request
            joined = of_type(take_events(bob), ConversationJoined)
            assert [j.conversation.request_from for j in joined] == ["carol"]
            # Its messages are kept (the request list shows them), marked as a request.
            assert [m.text for m in await bob.history(chat.id)] == ["hi, we have not met"]
            assert (await bob.conversation(chat.id)).is_request

        # bob answers on his laptop: that accepts the request there, and on the phone as soon
        # as it sees his own message.
        await bob2.send_text(chat.id, "hello carol")
        assert await bob2.requests() == []
        assert await bob1.requests() != []
        await bob1.sync()
        assert await bob1.requests() == []
        assert [m.text for m in await carol.history(chat.id)] == ["hi, we have not met"]
        await carol.sync()
        assert [m.text for m in await carol.history(chat.id)][-1] == "hello carol"

        # carol is accepted now: her next conversation with bob is no request.
        group = await carol.create_group("book club", ["bob"])
        await bob1.sync()
        assert (await bob1.conversation(group.id)).request_from is None


async def test_people_you_talk_to_and_your_own_devices_are_not_requests(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice = await net.user("alice")
        bob1 = await net.user("bob", "bob-phone")
        bob2 = await net.link(bob1, "bob-laptop")
        mine = await bob1.start_direct("alice")  # bob started it: not a request anywhere
        await alice.sync()
        await bob2.sync()
        assert await bob2.requests() == []
        assert [c.request_from for c in await alice.requests()] == ["bob"]  # bob is new to her
        assert (await bob2.conversation(mine.id)).request_from is None
        # alice is now someone bob talks to: her group is not a request for bob's devices.
        group = await alice.create_group("trip", ["bob"])
        for bob in (bob1, bob2):
            await bob.sync()
            assert (await bob.conversation(group.id)).request_from is None


async def test_accepting_a_request_explicitly(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        bob = await net.user("bob")
        dave = await net.user("dave")
        chat = await dave.start_direct("bob")
        await dave.send_text(chat.id, "hello")
        await bob.sync()
        accepted = await bob.accept_request(chat.id)
        assert accepted.request_from is None and await bob.requests() == []
        contact = await bob._tx(lambda tx: tx.get_contact("dave"))
        assert contact is not None and contact.accepted
        with pytest.raises(ConfigurationError):
            await bob.accept_request(chat.id)  # no longer a request


async def test_blocking_a_request_blocks_the_sender_on_every_device(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        bob1 = await net.user("bob", "bob-phone")
        bob2 = await net.link(bob1, "bob-laptop")
        eve = await net.user("eve")
        chat = await eve.start_direct("bob")
        spam = canary()
        await eve.send_text(chat.id, spam)
        await net.sync_all(bob1, bob2)

        receipts = await bob1.report_request(chat.id, "spam")
        assert [(r.sender, r.attachments) for r in receipts] == [("eve", ())]
        assert await net.ctx.storage.list_blocks("bob") == ["eve"]
        assert await bob1.requests() == [] and chat.id not in [
            c.id for c in await bob1.conversations()
        ]
        # The laptop learns of the block from the server and drops the request too.
        await bob2.sync()
        assert await bob2.blocked_users() == ["eve"]
        assert await bob2.requests() == []
        # eve's next message reaches none of bob's devices; she is not told.
        await eve.send_text(chat.id, "are you there?")
        assert await queued(net, bob1.device_id) == 0
        assert await queued(net, bob2.device_id) == 0
        # Nor does a new invitation.
        await eve.create_group("free stuff", ["bob"])
        assert await queued(net, bob1.device_id) == 0


# --- blocking -----------------------------------------------------------------------------------


async def test_blocking_drops_messages_on_every_device_and_the_server_stops_delivering(
    tmp_path: Path,
) -> None:
    async with safety_network(tmp_path) as net:
        alice = await net.user("alice")
        bob1 = await net.user("bob", "bob-phone")
        bob2 = await net.link(bob1, "bob-laptop")
        carol = await net.user("carol")
        group = await bob1.create_group("neighbours", ["alice", "carol"])
        await net.sync_all(alice, bob2, carol)
        take_events(bob2)

        # A message already on its way when bob blocks alice (on his phone):
        await alice.send_text(group.id, "queued before the block")
        await bob1.block("alice")
        assert await bob1.blocked_users() == ["alice"]
        # The laptop still has it queued; it learns of the block and drops the message.
        assert await queued(net, bob2.device_id) == 1
        await bob2.sync()
        assert await bob2.blocked_users() == ["alice"]
        assert [m.text for m in await bob2.history(group.id)] == []
        assert of_type(take_events(bob2), MessageReceived) == []
        await bob1.sync()
        assert [m.text for m in await bob1.history(group.id)] == []

        # From now on the server does not even queue alice's messages for bob's devices;
        # carol still gets them, and bob still gets carol's.
        await alice.send_text(group.id, "after the block")
        assert await queued(net, bob1.device_id) == 0
        assert await queued(net, bob2.device_id) == 0
        await carol.sync()
        await carol.send_text(group.id, "hello all")
        await net.sync_all(carol, bob1, bob2)
        assert [m.text for m in await carol.history(group.id)] == [
            "queued before the block",
            "after the block",
            "hello all",
        ]
        for bob in (bob1, bob2):
            assert [m.text for m in await bob.history(group.id)] == ["hello all"]

        # alice's commits still reach bob (the group must not fork): she renames it.
        await alice.rename(group.id, "block party")
        await net.sync_all(bob1, bob2)
        for bob in (bob1, bob2):
            assert (await bob.conversation(group.id)).name == "block party"

        # Unblocked on the laptop: the phone follows on its next sync; messages flow again.
        await bob2.unblock("alice")
        await bob1.sync()
        assert await bob1.blocked_users() == []
        await alice.send_text(group.id, "back again")
        await net.sync_all(bob1, bob2)
        for bob in (bob1, bob2):
            assert [m.text for m in await bob.history(group.id)][-1] == "back again"


async def test_blocking_yourself_is_refused(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        bob = await net.user("bob")
        with pytest.raises(ConfigurationError):
            await bob.block("bob")


# --- disappearing messages ----------------------------------------------------------------------


async def test_disappearing_messages_across_devices(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice = await net.user("alice")
        bob1 = await net.user("bob", "bob-phone")
        bob2 = await net.link(bob1, "bob-laptop")
        chat = await alice.start_direct("bob")
        await net.sync_all(bob1, bob2)

        # alice sets the timer: a commit, so every member's devices hold the same value in
        # the group context.
        await alice.set_disappearing(chat.id, 60)
        await net.sync_all(bob1, bob2)
        for client in (alice, bob1, bob2):
            conv = await client.conversation(chat.id)
            assert conv.disappearing_seconds == 60
            state = (await client._load(bytes.fromhex(chat.id))).mls  # type: ignore[union-attr]
            ext = find_extension(state.extensions, DISAPPEARING_EXTENSION)
            assert ext is not None and decode(DisappearingTimer, ext.extension_data).seconds == 60
        assert of_type(take_events(bob2), ConversationUpdated)

        secret, kept = canary(), canary()
        await alice.send_text(chat.id, secret)
        await bob1.sync()
        await bob1.send_text(chat.id, "ok")  # bob's own message disappears too
        await net.sync_all(alice, bob1, bob2)
        profiles = [net.profiles[c.device_id] for c in (alice, bob1, bob2)]
        for client, profile in zip((alice, bob1, bob2), profiles, strict=True):
            (first, _) = await client.history(chat.id)
            assert first.text == secret
            # The decrypted pages hold the message now (so the check below can fail).
            assert secret.encode() in decrypted_store(profile)

        # Not yet: 59 seconds later everything is there.
        net.client_clock.advance(59)
        for client in (alice, bob1, bob2):
            assert await client.purge_expired() == 0
        # After the timer: deleted on every device, and the bytes are gone from the SQLCipher
        # file (deleted rows, free pages and the WAL included) after a vacuum.
        net.client_clock.advance(2)
        for client, profile in zip((alice, bob1, bob2), profiles, strict=True):
            assert await client.purge_expired(vacuum=True) == 2
            assert await client.history(chat.id) == []
            assert secret.encode() not in decrypted_store(profile)
            assert secret.encode() not in raw_files(profile)

        # Turned off: new messages stay.
        await bob2.set_disappearing(chat.id, None)
        await net.sync_all(alice, bob1)
        assert (await alice.conversation(chat.id)).disappearing_seconds is None
        await alice.send_text(chat.id, kept)
        await net.sync_all(bob1, bob2)
        net.client_clock.advance(3600)
        for client in (alice, bob1, bob2):
            await client.purge_expired()
            assert [m.text for m in await client.history(chat.id)] == [kept]


async def test_expired_messages_are_deleted_by_sync(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await alice.set_disappearing(chat.id, 5)
        await alice.send_text(chat.id, "soon gone")
        await bob.sync()
        assert len(await bob.history(chat.id)) == 1
        net.client_clock.advance(6)
        await bob.sync()
        assert await bob.history(chat.id) == []


async def test_an_invalid_timer_is_refused(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice = await net.user("alice")
        await net.user("bob")
        chat = await alice.start_direct("bob")
        for bad in (0, -1, 2**32):
            with pytest.raises(ConfigurationError):
                await alice.set_disappearing(chat.id, bad)
        assert (await alice.conversation(chat.id)).disappearing_seconds is None
