"""SFrame keys of a call from the conversation's MLS group: per-epoch keys, KIDs, the grace
window, a removed member cut off, the privacy code, and counters persisted before use."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client import Client
from doorless.client.calls.counters import (
    COUNTER_BLOCK,
    StoredCounter,
    ensure_reserved,
    open_sender,
    setting_key,
)
from doorless.client.calls.keys import (
    GRACE_SECONDS,
    KID_LAYOUT,
    CallKeyring,
    EpochKeys,
    epoch_keys,
    privacy_code,
)
from doorless.sframe import (
    FrameDecryptError,
    ReplayedFrame,
    UnknownKeyId,
    decode_header,
)

from ..harness import Network, mls_state, network

pytestmark = pytest.mark.asyncio

CALL_ID = bytes(range(16))


async def keys_of(client: Client, conversation_id: str) -> EpochKeys:
    conv = await client._load(bytes.fromhex(conversation_id))
    assert conv is not None
    return epoch_keys(conv.mls, CALL_ID)


async def three(net: Network) -> tuple[Client, Client, Client, str]:
    alice, bob, carol = await net.user("alice"), await net.user("bob"), await net.user("carol")
    chat = await alice.create_group("team", ["bob", "carol"])
    await net.sync_all(bob, carol)
    return alice, bob, carol, chat.id


def ring_of(keys: EpochKeys, now: float = 0.0) -> CallKeyring:
    ring = CallKeyring()
    assert ring.install(keys, now)
    return ring


async def test_members_share_the_epoch_and_send_under_their_own_kid(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, chat = await three(net)
        ka, kb, kc = [await keys_of(c, chat) for c in (alice, bob, carol)]
        assert ka.epoch == kb.epoch == kc.epoch
        assert ka.base_key.value == kb.base_key.value == kc.base_key.value
        assert ka.privacy_code == kb.privacy_code == kc.privacy_code
        assert len(ka.privacy_code.replace(" ", "")) == 30
        assert ka.senders == kb.senders
        assert len({ka.own_leaf, kb.own_leaf, kc.own_leaf}) == 3
        # The KID carries the sender's leaf and the epoch's low bits (RFC 9605 §5.2).
        kid = ka.kid(ka.own_leaf)
        assert KID_LAYOUT.split(kid) == (0, ka.own_leaf, ka.epoch % 256)

        sender = ka.sender()
        sender.reserve(10)
        frame = sender.encrypt(b"audio frame")
        opened = ring_of(kb).open(frame, 0.0)
        assert (opened.sender, opened.plaintext, opened.epoch) == (
            alice.me,
            b"audio frame",
            ka.epoch,
        )
        assert ring_of(kc).open(frame, 0.0).sender == alice.me
        # Our own KID is not a receiving key (§4.4.1), and a frame replayed is refused.
        with pytest.raises(UnknownKeyId):
            ring_of(ka).open(frame, 0.0)
        ring = ring_of(kb)
        ring.open(frame, 0.0)
        with pytest.raises(ReplayedFrame):
            ring.open(frame, 0.0)
        tampered = frame[:-1] + bytes([frame[-1] ^ 1])
        with pytest.raises(FrameDecryptError):
            ring_of(kb).open(tampered, 0.0)


async def test_removed_member_is_cut_off_and_old_epoch_has_a_grace_window(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol, chat = await three(net)
        old_a, old_b, old_c = [await keys_of(c, chat) for c in (alice, bob, carol)]
        bob_ring, carol_ring = ring_of(old_b, 100.0), ring_of(old_c, 100.0)
        old_sender = old_a.sender()
        old_sender.reserve(10)
        in_flight = [old_sender.encrypt(b"old %d" % i) for i in range(3)]

        await alice.remove_members(chat, ["carol"])
        await net.sync_all(bob, carol)
        new_a, new_b = await keys_of(alice, chat), await keys_of(bob, chat)
        assert new_a.epoch == old_a.epoch + 1 == new_b.epoch
        assert new_a.privacy_code == new_b.privacy_code != old_a.privacy_code
        assert carol.me not in new_a.senders.values()
        assert bob_ring.install(new_b, 101.0)
        assert not bob_ring.install(old_b, 101.0)  # never back to an older epoch

        sender = new_a.sender()
        sender.reserve(10)
        fresh = sender.encrypt(b"after the removal")
        assert bob_ring.open(fresh, 101.0).plaintext == b"after the removal"
        # Carol still holds the old epoch only (she cannot process the next one).
        assert (await mls_state(carol, await carol.conversation(chat))).epoch == old_c.epoch
        with pytest.raises(UnknownKeyId):
            carol_ring.open(fresh, 101.0)

        # Frames of the previous epoch: accepted within the grace window, then refused.
        assert bob_ring.open(in_flight[0], 101.0 + GRACE_SECONDS / 2).epoch == old_a.epoch
        with pytest.raises(UnknownKeyId):
            bob_ring.open(in_flight[1], 101.0 + GRACE_SECONDS)
        assert bob_ring.previous_epoch is None


async def test_privacy_code_depends_on_call_and_epoch() -> None:
    a = privacy_code(CALL_ID, b"\x01" * 32)
    assert a == privacy_code(CALL_ID, b"\x01" * 32)
    assert a != privacy_code(CALL_ID, b"\x02" * 32)
    assert a != privacy_code(bytes(16), b"\x01" * 32)
    groups = a.split(" ")
    assert [len(g) for g in groups] == [5] * 6 and all(g.isdigit() for g in groups)


async def test_counters_are_persisted_before_use_and_never_reused_after_restart(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as net:
        alice, bob, _, chat = await three(net)
        gid = bytes.fromhex(chat)
        keys = await keys_of(alice, chat)
        sender = await open_sender(alice._core, gid, keys)
        assert sender.next_ctr == 0
        used = []
        for i in range(COUNTER_BLOCK + 5):
            await ensure_reserved(alice._core, gid, keys.epoch, sender)
            text = await alice._tx(lambda tx: tx.get_setting(setting_key(gid)))
            assert text is not None
            stored = StoredCounter.parse(text)
            # The bound in the store covers every counter used so far (§9.1).
            assert stored.bound > sender.next_ctr and stored.epoch == keys.epoch
            used.append(decode_header(sender.encrypt(b"%d" % i))[0].ctr)
        assert used == list(range(COUNTER_BLOCK + 5))

        alice = await net.reopen(alice)  # a restart in the same epoch
        again = await open_sender(alice._core, gid, await keys_of(alice, chat))
        await ensure_reserved(alice._core, gid, keys.epoch, again)
        first = decode_header(again.encrypt(b"after restart"))[0].ctr
        assert first > max(used)
        assert first == 2 * COUNTER_BLOCK  # the unused rest of the block is skipped

        # A new epoch starts its counters again (a new base key).
        await alice.remove_members(chat, ["carol"])
        fresh = await open_sender(alice._core, gid, await keys_of(alice, chat))
        assert fresh.next_ctr == 0
        assert (await keys_of(bob, chat)).epoch == keys.epoch  # bob has not synced yet
