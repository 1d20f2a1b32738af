"""The client library end to end over the real server app (in process): conversations,
devices, text and files, restarts, dedupe, commit races, at-rest encryption."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from httpx import ASGITransport

from doorless.client import (
    Client,
    ConversationJoined,
    ConversationKind,
    ConversationStatus,
    ConversationUpdated,
    DeliveryFailed,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    EpochConflict,
    FailureReason,
    MembershipChanged,
    MessageKind,
    MessageReceived,
    MessageSent,
    MessageState,
    NotAMember,
    ProfileLocked,
    ServerUnreachable,
    UserUnavailable,
    WrongPassphrase,
    devices,
    maintenance,
)
from doorless.client.transport import DeviceIdentity, Transport
from doorless.wire.payload import text_payload

from .harness import (
    BASE_URL,
    PASSPHRASE,
    Unreachable,
    mls_state,
    network,
    now_ms,
    of_type,
    take_events,
)

pytestmark = pytest.mark.asyncio


def texts(client_events: Sequence[object]) -> list[str | None]:
    return [e.text for e in client_events if isinstance(e, MessageReceived)]


async def test_direct_conversation(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        assert chat.kind is ConversationKind.DIRECT
        assert chat.members == ("alice", "bob")
        assert set(chat.devices) == {alice.me, bob.me}
        assert await alice.start_direct("bob") == chat  # the same conversation again

        await bob.sync()
        (joined,) = of_type(take_events(bob), ConversationJoined)
        assert joined.conversation.id == chat.id
        assert joined.by == alice.me
        assert joined.conversation.kind is ConversationKind.DIRECT

        sent = await alice.send_text(chat.id, "hello bob")
        assert sent.state is MessageState.SENT and sent.outgoing
        assert of_type(take_events(alice), MessageSent)[0].message == sent
        await bob.sync()
        (received,) = of_type(take_events(bob), MessageReceived)
        assert received.text == "hello bob"
        assert received.sender == alice.me
        assert received.message.message_id == sent.message_id
        assert received.message.kind is MessageKind.TEXT

        await bob.send_text(chat.id, "hi alice")
        await alice.sync()
        assert texts(take_events(alice)) == ["hi alice"]

        history = await bob.history(chat.id)
        assert [(m.text, m.outgoing, m.sender.user) for m in history] == [
            ("hello bob", False, "alice"),
            ("hi alice", True, "bob"),
        ]
        assert await bob.start_direct("alice") == await bob.conversation(chat.id)


async def test_linked_device_sees_both_directions(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice", "alice-laptop")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()

        phone = await net.link(alice, "alice-phone")  # added to the conversation on approval
        assert phone.username == "alice" and phone.device_id != alice.device_id
        view = await alice.conversation(chat.id)
        assert phone.me in view.devices
        linked = [e for e in take_events(alice) if isinstance(e, DeviceChanged)]
        assert [(e.device, e.change, e.conversation_id) for e in linked] == [
            (phone.me, DeviceChange.LINKED, None),
            (phone.me, DeviceChange.ADDED, chat.id),
        ]

        await net.sync_all(phone, bob)
        (joined,) = of_type(take_events(phone), ConversationJoined)
        assert joined.conversation.id == chat.id and joined.by == alice.me
        # The conversation's roster, and (once) the roster notice of alice's account.
        notice, added = of_type(take_events(bob), DeviceChanged)
        assert (added.device, added.change, added.by) == (phone.me, DeviceChange.ADDED, alice.me)
        assert (notice.device, notice.change, notice.conversation_id) == (
            phone.me,
            DeviceChange.LINKED,
            None,
        )
        assert notice.notice is not None

        # What one device sends appears on the other device of the same user, and at bob's.
        await alice.send_text(chat.id, "from the laptop")
        await phone.send_text(chat.id, "from the phone")
        await bob.send_text(chat.id, "from bob")
        await net.sync_all(alice, phone, bob)
        got = {c.device_id: take_events(c) for c in (alice, phone, bob)}
        assert texts(got[phone.device_id]) == ["from the laptop", "from bob"]
        assert texts(got[alice.device_id]) == ["from the phone", "from bob"]
        assert texts(got[bob.device_id]) == ["from the laptop", "from the phone"]
        from_phone = of_type(got[alice.device_id], MessageReceived)[0]
        assert from_phone.sender == phone.me and not from_phone.message.outgoing

        devices = await phone.devices()
        assert {d.device_id for d in devices} == {alice.device_id, phone.device_id}


async def test_group_with_file_and_restarts(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        alice2 = await net.link(alice, "alice2")
        bob = await net.user("bob")
        carol = await net.user("carol")
        group = await alice.create_group("plans", ["bob", "carol"])
        assert group.kind is ConversationKind.GROUP and group.name == "plans"
        assert group.members == ("alice", "bob", "carol")
        assert len(group.devices) == 4  # both of alice's devices
        await net.sync_all()
        for c in (alice2, bob, carol):
            (joined,) = of_type(take_events(c), ConversationJoined)
            assert joined.conversation.name == "plans"

        # Each sender has received what was sent before, so all devices must show one order.
        await alice.send_text(group.id, "one")
        bob = await net.reopen(bob)  # a restart between two messages
        await bob.sync()
        await bob.send_text(group.id, "two")
        data = os.urandom(5 * 1024 * 1024)
        await carol.sync()
        sent = await carol.send_file(group.id, data, name="big.bin")
        assert sent.file is not None and sent.file.size == len(data)
        assert sent.file.sha256 == hashlib.sha256(data).hexdigest()
        await alice2.sync()
        await alice2.send_text(group.id, "three")
        alice = await net.reopen(alice)
        await net.sync_all()

        expected = {
            "alice": ["two", None, "three"],
            "alice2": ["one", "two", None],
            "bob": ["one", None, "three"],
            "carol": ["one", "two", "three"],
        }
        clients = {"alice": alice, "alice2": alice2, "bob": bob, "carol": carol}
        for name, client in clients.items():
            history = await client.history(group.id)
            assert [m.text for m in history] == ["one", "two", None, "three"], name
            assert [m.message_id for m in history] == [
                m.message_id for m in await carol.history(group.id)
            ]
            events = of_type(take_events(client), MessageReceived)
            assert [e.text for e in events] == expected[name], name
            assert len({e.message.message_id for e in events}) == len(events)
            (file_message,) = [m for m in history if m.kind is MessageKind.FILE]
            assert file_message.sender == carol.me
            if client is not carol:
                assert await client.download(file_message) == data
        out = await bob.download_to(sent, tmp_path / "copy.bin")
        assert out.read_bytes() == data


async def test_add_and_remove_members(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        group = await alice.create_group("team", ["bob"])
        (created,) = of_type(take_events(alice), MembershipChanged)
        assert created.added == (bob.me,) and created.by == alice.me
        await alice.send_text(group.id, "before carol")
        group = await alice.add_members(group.id, ["carol"])
        assert group.members == ("alice", "bob", "carol")
        (change,) = of_type(take_events(alice), MembershipChanged)
        assert change.added_users == ("carol",) and change.by == alice.me

        await net.sync_all()
        assert texts(take_events(carol)) == []  # no history before joining
        (change,) = of_type(take_events(bob), MembershipChanged)
        assert change.added == (carol.me,) and change.added_users == ("carol",)
        await carol.send_text(group.id, "hi all")

        group = await bob.rename(group.id, "team 2")
        group = await bob.remove_members(group.id, ["alice"])
        assert group.members == ("bob", "carol")
        await net.sync_all()
        alice_events = take_events(alice)
        assert texts(alice_events) == ["hi all"]
        (renamed,) = of_type(alice_events, ConversationUpdated)
        assert renamed.conversation.name == "team 2" and renamed.by == bob.me
        (removed,) = of_type(alice_events, MembershipChanged)
        assert removed.removed == (alice.me,) and removed.removed_users == ("alice",)
        assert removed.by == bob.me
        assert (await alice.conversation(group.id)).status is ConversationStatus.REMOVED
        with pytest.raises(NotAMember):
            await alice.send_text(group.id, "am I still here?")

        await bob.send_text(group.id, "alice is gone")
        await net.sync_all()
        assert texts(take_events(carol)) == ["alice is gone"]
        assert texts(take_events(alice)) == []
        assert (await carol.conversation(group.id)).name == "team 2"

        # A user none of whose devices has a KeyPackage cannot be added (nothing changes).
        async with Transport(
            BASE_URL, DeviceIdentity.generate(), http_transport=ASGITransport(app=net.app)
        ) as dave:
            await dave.register("dave")
        with pytest.raises(UserUnavailable):
            await bob.add_members(group.id, ["dave"])
        assert (await bob.conversation(group.id)).members == ("bob", "carol")


async def test_dedupe_of_repeated_deliveries(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()
        take_events(bob)

        # 1. The same queued message twice: bob processes, the ack is lost, he fetches again.
        await alice.send_text(chat.id, "once")
        real_ack = bob._transport.ack
        bob._transport.ack = Unreachable(real_ack, before=1)  # type: ignore[method-assign]
        with pytest.raises(ServerUnreachable):
            await bob.sync()
        bob._transport.ack = real_ack  # type: ignore[method-assign]
        bob = await net.reopen(bob)
        assert await bob.sync() == 1  # redelivered, recognised, acknowledged
        assert await bob.sync() == 0
        assert texts(take_events(bob)) == []  # the event came before the restart
        assert [m.text for m in await bob.history(chat.id)] == ["once"]

        # 2. The same payload in two MLS messages (a sender's retry): shown once.
        payload = text_payload("twice?", now_ms())
        gid = bytes.fromhex(chat.id)
        await alice._send_payload(gid, payload)
        async with alice._lock:  # a second MLS message carrying the same payload
            conv = await alice._load(gid)
            assert conv is not None
            new_group, data = alice._encrypt_payload(conv, payload)
            new = conv.evolve(mls=new_group)
            await alice._save(new, lambda tx: tx.update_group(new.stored()))
            await alice._transport.send(data, alice._recipients(conv))
        await bob.sync()
        assert texts(take_events(bob)) == ["twice?"]
        assert [m.text for m in await bob.history(chat.id)] == ["once", "twice?"]


async def test_concurrent_commits_one_wins_and_all_converge(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        dave = await net.user("dave")
        group = await alice.create_group("race", ["bob"])
        await bob.sync()
        start = (await mls_state(alice, group)).epoch

        conflicts = 0
        sends = {}
        for c in (alice, bob):
            original = c._transport.send

            async def counting(*args: object, _send: object = original, **kw: object) -> object:
                nonlocal conflicts
                try:
                    return await _send(*args, **kw)  # type: ignore[operator]
                except EpochConflict:
                    conflicts += 1
                    raise

            sends[c.device_id] = counting
            c._transport.send = counting  # type: ignore[method-assign,assignment]

        # Both commit from the same epoch at the same time: the server takes exactly one.
        await asyncio.gather(
            alice.add_members(group.id, ["carol"]), bob.add_members(group.id, ["dave"])
        )
        assert conflicts == 1
        await net.sync_all()
        states = [await mls_state(c, group) for c in (alice, bob, carol, dave)]
        assert {s.epoch for s in states} == {start + 2}
        assert len({s.epoch_authenticator for s in states}) == 1
        views = [await c.conversation(group.id) for c in (alice, bob, carol, dave)]
        assert {v.members for v in views} == {("alice", "bob", "carol", "dave")}

        # The group stays whole: everyone reads everyone.
        for c in (alice, bob, carol, dave):
            await c.send_text(group.id, f"hi from {c.username}")
        await net.sync_all()
        for c in (alice, bob, carol, dave):
            got = sorted(t or "" for t in texts(take_events(c)))
            assert got == sorted(
                f"hi from {u}" for u in ("alice", "bob", "carol", "dave") if u != c.username
            )


async def test_lost_commit_answer_is_settled_after_restart(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        group = await alice.create_group("crash", ["bob"])
        await bob.sync()
        # The server accepts alice's commit, but the answer never reaches her.
        alice._transport.send = Unreachable(alice._transport.send, after=1)  # type: ignore[method-assign]
        with pytest.raises(ServerUnreachable):
            await alice.add_members(group.id, ["carol"])
        epoch = (await mls_state(alice, group)).epoch
        alice = await net.reopen(alice)  # a crash: only the store survives
        assert (await mls_state(alice, group)).epoch == epoch  # not merged without a verdict
        await alice.sync()  # sends the same commit again: "duplicate", so it was accepted
        assert (await mls_state(alice, group)).epoch == epoch + 1
        assert (await alice.conversation(group.id)).members == ("alice", "bob", "carol")
        await alice.send_text(group.id, "after the crash")
        await net.sync_all()
        assert texts(take_events(bob)) == ["after the crash"]
        assert texts(take_events(carol)) == ["after the crash"]


async def test_message_sent_while_offline_goes_out_later(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()
        real_send = alice._transport.send
        alice._transport.send = Unreachable(real_send, before=1)  # type: ignore[method-assign]
        queued = await alice.send_text(chat.id, "queued")
        assert queued.state is MessageState.PENDING
        # Meanwhile bob commits (a rename is not allowed in a direct chat: add a device).
        bob2 = await net.link(bob, "bob2")
        alice = await net.reopen(alice)
        await alice.sync()  # processes bob's commit, encrypts again, sends
        (sent,) = of_type(take_events(alice), MessageSent)
        assert sent.message.message_id == queued.message_id
        assert sent.message.state is MessageState.SENT
        await net.sync_all(bob, bob2)
        assert texts(take_events(bob)) == ["queued"]
        assert texts(take_events(bob2)) == ["queued"]
        assert [m.state for m in await alice.history(chat.id)] == [MessageState.SENT]


async def test_revoked_device_is_removed(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        phone = await net.link(alice, "phone")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await net.sync_all()
        take_events(alice)
        await alice.revoke_device(phone.device_id)
        view = await alice.conversation(chat.id)
        assert phone.me not in view.devices
        events = take_events(alice)
        assert (phone.me, DeviceChange.REVOKED) in [
            (e.device, e.change) for e in of_type(events, DeviceChanged)
        ]
        await bob.sync()
        # The roster notice of alice's account (once), and the conversation's change.
        notice, removed = of_type(take_events(bob), DeviceChanged)
        assert (notice.device, notice.change, notice.conversation_id) == (
            phone.me,
            DeviceChange.REVOKED,
            None,
        )
        assert notice.notice is not None
        assert (removed.device, removed.change) == (phone.me, DeviceChange.REMOVED)
        await bob.send_text(chat.id, "only alice's laptop now")
        await alice.sync()
        assert texts(take_events(alice)) == ["only alice's laptop now"]


async def test_ghost_device_is_refused(tmp_path: Path) -> None:
    """I3: a member adds a leaf claiming to be a device of alice that alice never approved;
    every other member refuses the commit and says why."""
    from doorless.client.conversations import make_credential
    from doorless.codec import encode
    from doorless.mls.framing import MLSMessage
    from doorless.mls.group import generate_key_package
    from doorless.mls.proposals import Add

    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        mallory = await net.user("mallory")
        group = await alice.create_group("g", ["bob", "mallory"])
        await net.sync_all()
        take_events(alice)
        # A fresh key (so the leaf binds to its device id) that alice never approved.
        ghost = DeviceIdentity.generate()
        gid = bytes.fromhex(group.id)
        group_conv = await mallory._load(gid)
        assert group_conv is not None
        forged = generate_key_package(
            group_conv.mls.suite,  # the conversation's suite (post-quantum by default)
            make_credential("alice", ghost.device_id),
            ghost.private_key,
            now=int(now_ms() / 1000),
            capabilities=mallory._capabilities,
        )
        assert encode(MLSMessage(forged.key_package))
        gid = bytes.fromhex(group.id)

        async with mallory._lock:  # mallory's client commits the Add and sends it itself
            conv = await mallory._load(gid)
            assert conv is not None
            out = conv.mls.commit([Add(forged.key_package)], now=int(now_ms() / 1000))
            await mallory._transport.send(
                out.commit, mallory._recipients(conv), group_info=out.pending.group.group_info()
            )
        await net.sync_all(alice, bob)
        for c in (alice, bob):
            (failure,) = of_type(take_events(c), DeliveryFailed)
            assert failure.reason is FailureReason.INVALID_MEMBER
            assert failure.sender == mallory.me
            view = await c.conversation(group.id)
            assert DeviceRef("alice", ghost.device_id) not in view.devices


async def test_profile_is_locked_and_needs_the_passphrase(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        profile = net.profile("alice")
        with pytest.raises(ProfileLocked):
            await Client.open(profile, PASSPHRASE, options=net.options())
        await alice.close()
        net.clients.remove(alice)
        with pytest.raises(WrongPassphrase):
            await Client.open(profile, "wrong", options=net.options())
        again = await Client.open(profile, PASSPHRASE, options=net.options())
        net.clients.append(again)
        assert again.me == alice.me


async def test_canary_never_at_rest_in_clear(tmp_path: Path) -> None:
    """Message text, file contents and names are in no file of any profile or of the server."""
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        group = await alice.create_group("canary-group-name-7d1f", ["bob", "carol"])
        await net.sync_all()
        canaries = [os.urandom(8).hex().encode() for _ in range(3)]
        await alice.send_text(group.id, "text " + canaries[0].decode())
        await bob.send_file(group.id, b"file " + canaries[1] * 100, name=canaries[2].decode())
        await net.sync_all()
        assert [m.file.name for m in await carol.history(group.id) if m.file] == [
            canaries[2].decode()
        ]
        name = b"canary-group-name-7d1f"
        for c in (alice, bob, carol):
            await c.close()
        net.clients.clear()
        hits = []
        for path in sorted(tmp_path.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                rel = path.relative_to(tmp_path)
                # The server validates handshakes (PublicMessage), so it reads the group's
                # GroupContext, where the name lives: docs/threat-model.md, "Validated groups".
                needles = canaries if rel.parts[0] == "server" else [*canaries, name]
                hits += [(str(rel), n) for n in needles if n in data]
        assert hits == []


async def test_a_queued_message_is_not_overtaken(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()
        real_send = alice._transport.send
        alice._transport.send = Unreachable(real_send, before=1)  # type: ignore[method-assign]
        first = await alice.send_text(chat.id, "first")
        assert first.state is MessageState.PENDING
        second = await alice.send_text(chat.id, "second")  # the server is back
        assert second.state is MessageState.SENT
        await bob.sync()
        assert texts(take_events(bob)) == ["first", "second"]
        states = [(m.text, m.state) for m in await alice.history(chat.id)]
        assert states == [("first", MessageState.SENT), ("second", MessageState.SENT)]


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


DAY = 24 * 3600.0


async def test_key_packages_rotate_expire_and_are_pruned(tmp_path: Path) -> None:
    clock = FakeClock()
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await Client.create_account(
            net.profile("bob"),
            PASSPHRASE,
            server_url=BASE_URL,
            username="bob",
            # One suite, so that the counts below are one suite's (tests/client/test_suites.py
            # has both suites).
            options=net.options(clock=clock, post_quantum=False),
        )
        net.clients.append(bob)
        local = await bob._tx(lambda tx: tx.list_key_packages())
        assert [k.last_resort for k in local].count(True) == 1
        one_time = {k.ref for k in local if not k.last_resort}
        assert len(one_time) == 12

        clock.now += 50 * DAY  # past half the lifetime: fresh packages replace the old ones
        await devices.top_up_key_packages(bob._core)
        local = await bob._tx(lambda tx: tx.list_key_packages())
        assert [k.last_resort for k in local].count(True) == 2  # old and new last resort
        fresh = {k.ref for k in local if not k.last_resort}
        assert len(fresh) == 12 and not fresh & one_time  # drained from the directory
        status = await bob._transport.key_package_status()
        assert (status.count, status.last_resort) == (12, True)

        clock.now += 45 * DAY  # the first packages would have expired now
        await maintenance.prune(bob._core)
        local = await bob._tx(lambda tx: tx.list_key_packages())
        assert {k.ref for k in local if not k.last_resort} == fresh
        assert [k.last_resort for k in local].count(True) == 1  # the replaced one is gone
        alice._options = dataclasses.replace(alice._options, clock=clock)
        chat = await alice.start_direct("bob")  # gets one of the fresh packages
        await bob.sync()
        (joined,) = of_type(take_events(bob), ConversationJoined)
        assert joined.conversation.id == chat.id
        assert len(await bob._tx(lambda tx: tx.list_key_packages())) == 12  # one used, deleted


async def test_expired_key_packages_are_skipped(tmp_path: Path) -> None:
    clock = FakeClock()
    async with network(tmp_path) as net:
        await net.user("bob")
        alice = await Client.create_account(
            net.profile("alice"),
            PASSPHRASE,
            server_url=BASE_URL,
            username="alice",
            options=net.options(clock=clock, key_package_target=2),
        )
        net.clients.append(alice)
        # Seen from a clock 100 days ahead, bob's packages (one-time and last resort) are
        # expired: none is used, and the user cannot be added.
        clock.now += 100 * DAY
        with pytest.raises(UserUnavailable):
            await alice.start_direct("bob")
        assert await alice.conversations() == []
