"""The adversarial scenarios end to end: honest `Client`s (witness quorum 1, a witness running
in the background) against a server that misbehaves on purpose. Each one is caught with a
specific event or error, and the attacker's device gets no message from an honest client."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from doorless.client import (
    ConversationJoined,
    DeliveryFailed,
    FailureReason,
    UserUnavailable,
)
from doorless.client.events import (
    AlarmKind,
    DeviceChange,
    DeviceChanged,
    TransparencyAlarm,
)
from doorless.client.kt import KtConfig, KtUnavailable
from doorless.client.kt_profile import SafetyStatus
from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import DoorlessError
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import MLSMessage
from doorless.mls.group import Group, KeyPackageBundle, generate_key_package
from doorless.mls.key_package import KeyPackage
from doorless.mls.proposals import Add
from doorless.wire.kt import credential_identity, user_label

from .helpers import (
    BASE_URL,
    Net,
    add_ghost_device,
    clients,
    forked,
    of_type,
    sql,
    take_events,
)
from .test_kt_adversarial import drop_latest_version

pytestmark = pytest.mark.asyncio


def _bundle(
    username: str, device: DeviceIdentity, like: object, now: int, suite: int = 1
) -> KeyPackageBundle:
    """A KeyPackage of ``device`` claiming to be ``username``'s, with a Doorless client's
    capabilities (``like``: a client whose capabilities to copy), in ``suite``."""
    return generate_key_package(
        cipher_suite(suite),
        BasicCredential(credential_identity(username, device.device_id)),
        device.private_key,
        now=now,
        capabilities=like._capabilities,  # type: ignore[attr-defined]
    )


async def _ghost_with_key_package(
    net: Net, username: str, like: object, *, root: bool = False, suite: int = 1
) -> tuple[DeviceIdentity, Transport, KeyPackageBundle]:
    ghost = await add_ghost_device(net.server, username, root=root, now=int(net.clock()))
    t = net.transport("ghost-" + username, ghost)
    await t.authenticate()
    bundle = _bundle(username, ghost, like, int(net.clock()), suite)
    await t.upload_key_packages([encode(MLSMessage(bundle.key_package))])
    return ghost, t, bundle


def _alarms(client: object, kind: AlarmKind) -> list[TransparencyAlarm]:
    return [a for a in of_type(take_events(client), TransparencyAlarm) if a.kind is kind]  # type: ignore[arg-type]


# --- (1) ghost device in Alice's directory ---------------------------------------------------


async def test_1_ghost_device_is_never_added_and_alice_is_alarmed(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        bob = await group.user("bob")
        ghost, ghost_t, _ = await _ghost_with_key_package(net, "alice", alice)
        chat = await bob.start_direct("alice")
        assert {d.device_id for d in chat.devices} == {alice.device_id, bob.device_id}
        await bob.send_text(chat.id, "for alice only")
        assert (await ghost_t.fetch()).messages == []  # no Welcome, no message

        take_events(alice)
        alarms = await alice.check_transparency()
        assert [(a.kind, a.device.device_id if a.device else None) for a in alarms] == [
            (AlarmKind.UNAPPROVED_DEVICE, ghost.device_id)
        ]
        assert _alarms(alice, AlarmKind.UNAPPROVED_DEVICE)


# --- (2) ghost member added by a commit --------------------------------------------------------


async def test_2_commit_adding_a_ghost_is_refused(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        bob = await group.user("bob")
        mallory = await group.user("mallory")
        chat = await alice.create_group("team", ["bob", "mallory"])
        await bob.sync()
        await mallory.sync()
        # Mallory's client is malicious: it adds a device whose key is not in KT (with a
        # KeyPackage in the conversation's suite, post-quantum by default).
        conv = await mallory._load(bytes.fromhex(chat.id))
        assert conv is not None
        ghost, ghost_t, bundle = await _ghost_with_key_package(
            net, "mallory", mallory, suite=int(conv.mls.suite.id)
        )
        out = conv.mls.commit([Add(bundle.key_package)], now=int(net.clock()))
        await mallory._transport.send(
            out.commit,
            [alice.device_id, bob.device_id],
            welcome=out.welcome,
            welcome_recipients=[ghost.device_id],
            group_info=out.group_info,
        )
        for honest in (alice, bob):
            take_events(honest)
            await honest.sync()
            (failed,) = of_type(take_events(honest), DeliveryFailed)
            assert failed.reason is FailureReason.INVALID_MEMBER
            assert "transparency log" in failed.detail
            view = await honest.conversation(chat.id)
            assert all(d.device_id != ghost.device_id for d in view.devices)
        # The ghost joined Mallory's fork of the group; the honest members never send it
        # anything (their messages stay in the epoch they accept).
        with contextlib.suppress(DoorlessError):
            await alice.send_text(chat.id, "not for the ghost")
        queued = (await ghost_t.fetch()).messages
        assert len(queued) == 1  # the Welcome from Mallory, nothing from Alice or Bob
        joined = Group.join_from_welcome(queued[0].data, bundle)
        assert joined.epoch == conv.mls.epoch + 1


# --- (3) Bob's key swapped in the directory ---------------------------------------------------


async def test_3_swapped_key_is_refused_both_ways(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        bob = await group.user("bob")
        # The server hides Bob's device and puts its own, self-approved, in the directory.
        fake, fake_t, fake_bundle = await _ghost_with_key_package(net, "bob", bob, root=True)
        (row,) = sql(net.server.config, "SELECT * FROM devices WHERE device_id = ?", bob.device_id)
        sql(net.server.config, "DELETE FROM devices WHERE device_id = ?", bob.device_id)
        # Alice wants to talk to bob: the only device on offer is not bob's in KT.
        with pytest.raises(UserUnavailable):
            await alice.start_direct("bob")
        # The fake "bob" invites Alice itself: the Welcome's tree has a key not in KT.
        claimed = await fake_t.claim_key_packages("alice")
        group_ = Group.create(
            cipher_suite(1),
            os.urandom(32),
            fake_bundle.key_package.leaf_node,
            fake_bundle.encryption_private_key,
            fake.private_key,
        )
        kp = decode(MLSMessage, claimed.key_packages[0].key_package).body
        assert isinstance(kp, KeyPackage)
        out = group_.commit([Add(kp)], now=int(net.clock()))
        assert out.welcome is not None
        await fake_t.send(out.welcome, [alice.device_id])
        take_events(alice)
        await alice.sync()
        events = take_events(alice)
        assert not of_type(events, ConversationJoined)
        (failed,) = of_type(events, DeliveryFailed)
        assert failed.reason is FailureReason.WELCOME_UNUSABLE
        assert "transparency log" in failed.detail
        # Bob (put back so that he notices nothing else) is alarmed by his own monitor.
        marks = ", ".join("?" * len(row))
        sql(net.server.config, f"INSERT INTO devices VALUES ({marks})", *row)
        alarms = await bob.check_transparency()
        assert [a.device.device_id for a in alarms if a.device] == [fake.device_id]


# --- (4) split view -----------------------------------------------------------------------------


async def test_4_split_view(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        witnessed = group.options().kt
        bob = await group.user("bob", kt=replace(witnessed, witness_wait=0.2))
        eve = await group.user("eve", kt=KtConfig())  # no witness: quorum 0, warned
        await bob.safety_number("alice")
        await eve.safety_number("alice")
        async with forked(net) as fork:
            await group.link(alice, "alice-phone")  # only in the honest view
            async with Transport(
                BASE_URL,
                DeviceIdentity.generate(),
                http_transport=httpx.ASGITransport(app=fork.app),
                retries=0,
            ) as carol:
                await carol.register("carol")  # only in the fork
            net.front.victims.update({"bob", "eve"})
            # Bob requires the witness: the fork is never cosigned.
            with pytest.raises(KtUnavailable):
                await bob.safety_number("alice")
            # Eve, who requires no witness, is shown the fork's log ...
            await eve.safety_number("alice")
            net.front.victims.clear()
        # ... and as soon as she sees the honest log again, the fork is caught.
        take_events(eve)
        alarms = await eve.check_transparency()
        assert [a.kind for a in alarms] == [AlarmKind.FORK]
        assert "split view" in alarms[0].detail
        assert _alarms(eve, AlarmKind.FORK) == alarms


# --- (5) rolled-back head, across a restart --------------------------------------------------


async def test_5_rollback_is_caught_after_a_restart(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        bob = await group.user("bob")
        async with forked(net, name="old") as old:
            net.front.fork = None
            await group.link(alice, "alice-phone")
            assert (await bob.safety_number("alice")).status is SafetyStatus.UNVERIFIED
            bob = await group.reopen(bob, "bob")  # the verified head is persisted
            net.front.fork = old.app
            net.front.victims.add("bob")
            alarms = await bob.check_transparency()
            assert [a.kind for a in alarms] == [AlarmKind.ROLLBACK]
            assert "rollback" in alarms[0].detail
            assert "older log" in alarms[0].advice
            # Stored until acknowledged, and raised (emitted) once.
            assert [a.id for a in await bob.alarms()] == [alarms[0].id]
            take_events(bob)
            await bob.check_transparency()
            assert not _alarms(bob, AlarmKind.ROLLBACK)
            assert await bob.ack_alarms(None) == [alarms[0].id]
            assert await bob.alarms() == []


# --- (6) a version removed from the log ------------------------------------------------------


async def test_6_removed_version_is_caught(tmp_path: Path) -> None:
    async with clients(tmp_path) as (net, group):
        alice = await group.user("alice")
        await group.link(alice, "alice-phone")
        bob = await group.user("bob")
        await bob.safety_number("alice")  # bob verified version 1
        async with forked(net, drop_latest_version(user_label("alice"))):
            net.front.victims.add("bob")
            alarms = await bob.check_transparency()
            assert [a.kind for a in alarms] == [AlarmKind.ROLLBACK]


# --- safety numbers ------------------------------------------------------------------------------


async def test_safety_numbers_match_and_changes_warn(tmp_path: Path) -> None:
    async with clients(tmp_path) as (_net, group):
        alice = await group.user("alice")
        bob = await group.user("bob")
        a = await alice.safety_number("bob")
        b = await bob.safety_number("alice")
        assert a.number.digits == b.number.digits and len(a.number.digits) == 60
        assert a.status is SafetyStatus.UNVERIFIED
        assert (await alice.confirm_safety_number("bob")).status is SafetyStatus.VERIFIED
        assert (await alice.safety_number("bob")).status is SafetyStatus.VERIFIED
        chat = await alice.start_direct("bob")
        await bob.sync()
        await group.link(bob, "bob-phone")  # bob's key set changes
        changed = await alice.safety_number("bob")
        assert changed.status is SafetyStatus.CHANGED
        assert changed.number.digits != a.number.digits
        take_events(alice)
        await alice.sync()  # processes bob's commit adding his phone
        events = take_events(alice)
        # Approved by bob's phone and in the log: a roster notice, not an alarm.
        assert not of_type(events, TransparencyAlarm)
        (linked,) = [e for e in of_type(events, DeviceChanged) if e.change is DeviceChange.LINKED]
        assert linked.device.user == "bob" and linked.notice
        assert [n for n in await alice.pending_notices() if n == linked]
        assert chat.id
