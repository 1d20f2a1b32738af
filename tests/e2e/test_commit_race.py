"""Two members commit in the same epoch, against the real server process: exactly one commit
wins, the other client catches up and commits again in the next epoch, and the group stays
whole (every member at the same epoch with the same roster and name, messages still flow).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from doorless.client import Client, EpochConflict

from .helpers import Devices, ServerProcess

pytestmark = pytest.mark.asyncio


class SameEpoch:
    """Holds the first commit of each client until both are ready, then lets them go at the
    same moment, so that both were planned on the same epoch; records what the server said."""

    def __init__(self, clients: dict[str, Client]) -> None:
        self.barrier = asyncio.Barrier(len(clients))
        self.outcomes: dict[str, list[str]] = {name: [] for name in clients}
        for name, client in clients.items():
            self._wrap(name, client)

    def _wrap(self, name: str, client: Client) -> None:
        transport = client._transport
        original = transport.send

        async def send(*args: Any, **kwargs: Any) -> Any:
            if not self.outcomes[name]:
                await self.barrier.wait()
            try:
                result = await original(*args, **kwargs)
            except EpochConflict:
                self.outcomes[name].append("epoch_conflict")
                raise
            self.outcomes[name].append("accepted")
            return result

        transport.send = send  # type: ignore[method-assign]


async def test_concurrent_commits_one_wins_group_stays_whole(
    server: ServerProcess, tmp_path: Path
) -> None:
    net = Devices(server.url, tmp_path / "profiles")
    try:
        alice = await net.account("alice")
        bob = await net.account("bob")
        await net.account("carol")
        await net.account("dave")
        group = await alice.create_group("race", ["bob", "carol"])
        await net.sync_all()
        start = (await bob.conversation(group.id)).epoch
        assert start == group.epoch

        race = SameEpoch({"alice": alice, "bob": bob})
        await asyncio.gather(
            alice.rename(group.id, "renamed by alice"),
            bob.add_members(group.id, ["dave"]),
        )
        first = sorted(race.outcomes[name][0] for name in ("alice", "bob"))
        assert first == ["accepted", "epoch_conflict"]  # exactly one wins the epoch
        assert all(o[-1] == "accepted" for o in race.outcomes.values())  # the other follows

        # Both changes are in, one epoch each: no fork, nothing lost.
        await net.sync_all(rounds=3)
        views = {n: await c.conversation(group.id) for n, c in net.clients.items()}
        assert {v.epoch for v in views.values()} == {start + 2}
        assert {v.name for v in views.values()} == {"renamed by alice"}
        assert {v.devices for v in views.values()} == {views["alice"].devices}
        assert views["alice"].members == ("alice", "bob", "carol", "dave")
        # The server took exactly two epochs.
        assert await alice._transport.group_epoch(bytes.fromhex(group.id)) == start + 2

        # Everyone can still talk to everyone.
        for name, client in net.clients.items():
            await client.send_text(group.id, f"hello from {name}")
        await net.sync_all()
        for name, client in net.clients.items():
            texts = [m.text for m in await client.history(group.id) if not m.outgoing]
            want = {f"hello from {n}" for n in net.clients if n != name}
            assert set(texts) == want, name
    finally:
        await net.close_all()
