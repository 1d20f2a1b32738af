"""``client.calls``: ringing, answering, declining and hanging up through signals in the
conversation (in process; the clients sync by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client.calls.manager import NoSuchCall
from doorless.client.events import CallState, CallUpdated
from doorless.errors import StateError
from support.call_relay import MemoryRelay

from ..harness import network, of_type, take_events

pytestmark = pytest.mark.asyncio


async def test_direct_call_ring_answer_hang_up(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob = await net.user("alice"), await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()

        call = await alice.calls.start(chat.id)
        assert call.state is CallState.CALLING and call.participants == ()
        with pytest.raises(NoSuchCall):
            await bob.calls.incoming(timeout=0.05)
        await bob.sync()
        ringing = await bob.calls.incoming(timeout=1)
        assert (ringing.call_id, ringing.caller, ringing.incoming) == (call.call_id, alice.me, True)
        assert ringing.direct
        answered = await bob.calls.answer(ringing.call_id)
        assert answered.state is CallState.ACTIVE
        await alice.sync()
        await alice.calls.wait(call.call_id, CallState.ACTIVE, timeout=1)

        relay = MemoryRelay()
        ea = await alice.calls.connect(call.call_id, relay.channel("alice"))
        eb = await bob.calls.connect(call.call_id, relay.channel("bob"))
        assert ea.privacy_code == eb.privacy_code == alice.calls.get(call.call_id).privacy_code
        # Each announced itself on the relay (join): both see the other as a participant.
        await alice.sync()
        await bob.sync()
        both = tuple(sorted((alice.me, bob.me)))
        assert (await alice.calls.wait_for_peer(call.call_id, timeout=1)).participants == both
        assert (await bob.calls.wait_for_peer(call.call_id, timeout=1)).participants == both

        await bob.calls.hang_up(call.call_id)
        await alice.sync()
        ended = await alice.calls.wait(call.call_id, CallState.ENDED, timeout=1)
        assert "bob" in ended.reason
        updates = of_type(take_events(alice), CallUpdated)
        assert [u.state for u in updates][-1] is CallState.ENDED
        with pytest.raises(StateError):
            await bob.calls.answer(call.call_id)


async def test_decline_ends_a_direct_call(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob = await net.user("alice"), await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()

        call = await alice.calls.start(chat.id)
        await bob.sync()
        ringing = await bob.calls.incoming(timeout=1)
        assert (await bob.calls.decline(ringing.call_id)).state is CallState.ENDED
        await alice.sync()
        ended = await alice.calls.wait(call.call_id, CallState.ENDED, timeout=1)
        assert ended.reason == "bob declined"
        with pytest.raises(NoSuchCall):
            alice.calls.get("00" * 16)
