"""Upgrading an existing classic conversation to the post-quantum suite
(doorless.client.upgrade): a new conversation with the same members, name and timer, linked to
the old one on every member's client; the old history stays; a member without post-quantum
KeyPackages makes it refuse with nothing changed (I4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doorless.client import (
    CannotUpgrade,
    Client,
    ConversationUpdated,
    DeliveryFailed,
    FailureReason,
    outbox,
)
from doorless.client.store import Transaction
from doorless.codec import encode
from doorless.wire.payload import Payload, PayloadKind
from doorless.wire.upgrade import UpgradeNotice

from .harness import Network, network, of_type, take_events

pytestmark = pytest.mark.asyncio

HYBRID = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
CLASSIC = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"


async def _classic_group(net: Network, members: list[str]) -> tuple[Client, str]:
    """alice's classic group with ``members``, made as a client from before the PQ suites
    would (she is then restarted with them on)."""
    alice = await net.user("alice", post_quantum=False)
    team = await alice.create_group("team", members)
    assert team.cipher_suite == CLASSIC
    alice = await net.reopen(alice)
    await alice.sync()  # publishes her hybrid KeyPackages
    return alice, team.id


async def test_a_classic_conversation_is_upgraded_for_all_three(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        bob, carol = await net.user("bob"), await net.user("carol")
        alice, old_id = await _classic_group(net, ["bob", "carol"])
        await alice.set_disappearing(old_id, 3600)
        await net.sync_all()
        await bob.send_text(old_id, "said before the upgrade")
        await net.sync_all()

        new = await alice.upgrade_conversation(old_id)
        assert (new.cipher_suite, new.post_quantum) == (HYBRID, True)
        assert (new.name, new.members) == ("team", ("alice", "bob", "carol"))
        assert new.disappearing_seconds == 3600
        assert (new.upgraded_from, new.upgraded_to) == (old_id, None)
        assert new.id != old_id
        await net.sync_all()

        for c in (alice, bob, carol):
            convs = {v.id: v for v in await c.conversations()}
            assert convs[old_id].upgraded_to == new.id
            assert convs[old_id].cipher_suite == CLASSIC
            assert convs[new.id].upgraded_from == old_id
            assert (convs[new.id].post_quantum, convs[new.id].name) == (True, "team")
            assert convs[new.id].disappearing_seconds == 3600
            # The old history stays readable; the notice is not a message.
            assert [m.text for m in await c.history(old_id)] == ["said before the upgrade"]

        await carol.send_text(new.id, "post-quantum now")
        await bob.send_text(new.id, "agreed")
        await net.sync_all()
        for c in (alice, bob, carol):
            texts = sorted(str(m.text) for m in await c.history(new.id))
            assert texts == ["agreed", "post-quantum now"]

        with pytest.raises(Exception, match="already upgraded"):
            await alice.upgrade_conversation(old_id)
        with pytest.raises(Exception, match="already uses a post-quantum"):
            await bob.upgrade_conversation(new.id)


async def test_a_member_without_pq_key_packages_refuses_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as net:
        bob = await net.user("bob")
        olga = await net.user("olga", post_quantum=False)  # publishes classic packages only
        alice, old_id = await _classic_group(net, ["bob", "olga"])
        await net.sync_all()
        before = await alice.conversations()

        with pytest.raises(CannotUpgrade, match="olga") as raised:
            await alice.upgrade_conversation(old_id)
        assert raised.value.users == ("olga",)

        assert await alice.conversations() == before
        await net.sync_all()
        for c in (bob, olga):
            (only,) = await c.conversations()
            assert (only.id, only.upgraded_to, only.cipher_suite) == (old_id, None, CLASSIC)
            assert await c.history(old_id) == []
        await olga.send_text(old_id, "still here")
        await net.sync_all()
        assert [m.text for m in await alice.history(old_id)] == ["still here"]


async def _send_notice(sender: Client, conversation_id: str, body: bytes) -> None:
    """A member's upgrade notice with any body (as a modified client could send)."""
    s = sender._core
    payload = Payload(os.urandom(16), s.now_ms(), PayloadKind.upgrade, body)

    def control(tx: Transaction, _: int | None) -> None:
        tx.put_pending_payload(payload.message_id.hex(), encode(payload))

    await outbox.send_payload(s, bytes.fromhex(conversation_id), payload, shown=None, extra=control)


async def test_a_bad_notice_is_reported_and_the_first_notice_wins(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        bob, carol = await net.user("bob"), await net.user("carol")
        alice, old_id = await _classic_group(net, ["bob", "carol"])
        await net.sync_all()
        take_events(bob)

        await _send_notice(carol, old_id, b"\x01\x03abc\x00\x01")  # a 3-byte group id
        await net.sync_all()
        (failure,) = of_type(take_events(bob), DeliveryFailed)
        assert failure.reason is FailureReason.INVALID_PAYLOAD
        assert (await bob.conversation(old_id)).upgraded_to is None

        new = await alice.upgrade_conversation(old_id)
        await net.sync_all()
        (updated,) = [
            e for e in of_type(take_events(bob), ConversationUpdated) if e.conversation.id == old_id
        ]
        assert updated.conversation.upgraded_to == new.id and updated.by is not None
        # A later notice by another member does not re-point the old conversation.
        await _send_notice(carol, old_id, encode(UpgradeNotice(os.urandom(32), 1)))
        await net.sync_all()
        assert (await bob.conversation(old_id)).upgraded_to == new.id
        assert (await bob.conversation(new.id)).upgraded_from == old_id
        assert await bob.history(old_id) == []
