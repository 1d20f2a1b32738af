"""History handoff to a newly linked device over the real server app (in process): the
chosen range arrives once, marked transferred, only at the new device; the offer is sealed to
the new device's KeyPackage (its key is deleted after use); a bad choice or target is refused."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from doorless.client import (
    DeliveryFailed,
    HistoryChoice,
    MessageReceived,
)
from doorless.errors import ConfigurationError

from .harness import network, take_events

DAY = 86_400


def test_history_choices() -> None:
    assert HistoryChoice.parse("none").none
    assert HistoryChoice.parse("all").since(10**12) == 0
    assert HistoryChoice.parse("days:2").since(10 * DAY * 1000) == 8 * DAY * 1000
    for bad in ("", "days:0", "days:x", "some", "days:-1"):
        with pytest.raises(ConfigurationError):
            HistoryChoice.parse(bad)


@pytest.mark.asyncio
async def test_no_history_sends_nothing(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        alice2 = await net.link(alice, "alice2")
        sent = await alice.send_history(alice2.device_id, "all")
        assert (sent.messages, sent.conversations) == (0, 0)
        assert await alice2.sync() == 0


@pytest.mark.asyncio
async def test_handoff_delivers_the_chosen_range_once(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        carol = await net.user("carol")
        chat = await alice.start_direct("bob")
        team = await alice.create_group("team", ["bob", "carol"])
        # One message from "three days ago" (the sender's clock), then recent ones.
        real = bob._options
        bob._options = dataclasses.replace(real, clock=lambda: time.time() - 3 * DAY)
        await net.sync_all(bob)
        await bob.send_text(chat.id, "three days ago")
        bob._options = real
        await alice.send_text(chat.id, "today to bob")
        await net.sync_all(carol)
        await carol.send_text(team.id, "today in the team")
        await net.sync_all(alice, bob, carol)

        alice2 = await net.link(alice, "alice2")
        await net.sync_all(alice2, bob, carol)
        assert [m.text for m in await alice2.history(chat.id)] == []
        take_events(bob), take_events(carol), take_events(alice2)
        keys_before = {k.ref for k in await alice2._tx(lambda tx: tx.list_key_packages())}

        sent = await alice.send_history(alice2.device_id, "days:1")
        assert (sent.messages, sent.conversations) == (2, 2)
        await alice2.sync()
        direct = await alice2.history(chat.id)
        assert [(m.text, m.transferred) for m in direct] == [("today to bob", True)]
        assert [m.text for m in await alice2.history(team.id)] == ["today in the team"]
        assert all(m.transferred for m in await alice2.history(team.id))
        # The one-time KeyPackage the offer was sealed to is gone (I6).
        keys_after = {k.ref for k in await alice2._tx(lambda tx: tx.list_key_packages())}
        assert keys_before - keys_after
        assert not [e for e in take_events(alice2) if isinstance(e, DeliveryFailed)]

        # All of it now: what alice2 has is not stored twice.
        await alice.send_history(alice2.device_id, "all")
        await alice2.sync()
        texts = [m.text for m in await alice2.history(chat.id)]
        assert sorted(texts) == ["three days ago", "today to bob"]
        assert len(await alice2.history(team.id)) == 1

        # Nobody else got anything: no message, no failure.
        await net.sync_all(bob, carol, alice)
        for other in (bob, carol):
            events = take_events(other)
            assert not [e for e in events if isinstance(e, MessageReceived | DeliveryFailed)]
        assert len(await bob.history(chat.id)) == 2

        with pytest.raises(ConfigurationError):
            await alice.send_history(bob.device_id, "all")
