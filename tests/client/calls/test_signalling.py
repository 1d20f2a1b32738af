"""Call signals travel encrypted inside the conversation and never become messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client import MessageReceived
from doorless.client.calls.signalling import send_signal, signal_of, signal_payload
from doorless.client.events import CallSignalReceived
from doorless.errors import DecodeError
from doorless.wire.call_signal import CallMedia, CallSignal, CallSignalType, new_call_id
from doorless.wire.payload import Payload, PayloadKind, text_payload

from ..harness import network, of_type, take_events

pytestmark = pytest.mark.asyncio


async def test_signal_reaches_every_member_and_is_not_a_message(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol = await net.user("alice"), await net.user("bob"), await net.user("carol")
        chat = await alice.create_group("team", ["bob", "carol"])
        await net.sync_all(bob, carol)
        take_events(bob), take_events(carol)
        ring = CallSignal(CallSignalType.ring, new_call_id(), CallMedia.audio | CallMedia.video)
        await send_signal(alice._core, bytes.fromhex(chat.id), ring)
        await send_signal(
            alice._core, bytes.fromhex(chat.id), CallSignal(CallSignalType.end, ring.call_id)
        )
        for peer in (bob, carol):
            await peer.sync()
            events = take_events(peer)
            got = of_type(events, CallSignalReceived)
            assert [(e.sender, e.signal) for e in got] == [
                (alice.me, ring),
                (alice.me, CallSignal(CallSignalType.end, ring.call_id)),
            ]
            assert got[0].conversation_id == chat.id
            assert not of_type(events, MessageReceived)
            assert await peer.history(chat.id) == []
        assert await alice.history(chat.id) == []


async def test_signal_of_other_kinds_and_malformed() -> None:
    signal = CallSignal(CallSignalType.join, new_call_id())
    assert signal_of(signal_payload(signal, 1)) == signal
    assert signal_of(text_payload("hi", 1)) is None
    bad = Payload(bytes(16), 1, PayloadKind.call_signal, b"\x09" + bytes(17))
    with pytest.raises(DecodeError):
        signal_of(bad)
