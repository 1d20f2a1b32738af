"""A live push needs no read of the queue: the send hands its committed entries to the socket.

`doorless.server.delivery.send` publishes the entries it queued (`DeliveryResult.queued`) with
the wake-up; `doorless.server.routes.ws` pushes them if they continue what the socket pushed,
and reads the queue otherwise (a gap: an entry committed elsewhere, whose wake-up has not come).
What is pushed either way is what the queue holds.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from doorless.server.storage.base import Delivery
from doorless.wire.messages import QueuedMessage
from support.servers import FakeClock, generous_config

from .helpers import Harness, private_message, running
from .test_ws_contract import Session, Side

pytestmark = pytest.mark.asyncio

GROUP = b"carried-group"


def count_reads(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The devices whose queue was read, one item a read."""
    reads: list[str] = []
    real: Callable[[str, int, int], Awaitable[list[QueuedMessage]]] = harness.ctx.storage.fetch

    async def fetch(device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        reads.append(device_id)
        return await real(device_id, after, limit)

    monkeypatch.setattr(harness.ctx.storage, "fetch", fetch)
    return reads


async def pushed(session: Session, count: int) -> list[QueuedMessage]:
    frames = [json.loads(m["text"]) for m in await session.expect(count)]
    assert all(f["type"] == "message" for f in frames), frames
    return [
        QueuedMessage(
            f["seq"],
            base64.b64decode(f["data"]),
            f["received_at"],
            None if f["frank"] is None else base64.b64decode(f["frank"]),
        )
        for f in frames
    ]


async def test_live_pushes_read_nothing_and_are_what_the_queue_holds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(generous_config(data_dir), FakeClock()) as harness:
        side = Side(harness, await harness.user("alice"), await harness.user("bob"))
        bob = side.ids()["bob"]
        reads = count_reads(harness, monkeypatch)
        session = Session(side, side.token("bob"), "after=0")
        await session.expect(1)  # the accept
        got = []
        for i in range(5):
            await side.send_to_bob(private_message(GROUP, 0, ciphertext=b"live %d" % i * 4))
            got += await pushed(session, 1)
        assert reads == [bob]  # the first read of the queue only, none per push
        assert got == await harness.ctx.storage.fetch(bob, 0, 100)
        assert [m.seq for m in got] == [1, 2, 3, 4, 5]
        await session.disconnect()


async def test_an_entry_committed_elsewhere_is_read_before_the_carried_one(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(generous_config(data_dir), FakeClock()) as harness:
        side = Side(harness, await harness.user("alice"), await harness.user("bob"))
        alice, bob = side.ids()["alice"], side.ids()["bob"]
        reads = count_reads(harness, monkeypatch)
        session = Session(side, side.token("bob"), "after=0")
        await session.expect(1)
        async with asyncio.timeout(5):
            while not reads:  # the socket's first read of its (empty) queue is done
                await asyncio.sleep(0.001)
        # Seq 1 committed by "another server process": no wake-up reaches this one.
        elsewhere = private_message(GROUP, 0, ciphertext=b"elsewhere" * 4)
        await harness.ctx.storage.deliver(
            alice, "x-1", b"x", [Delivery(elsewhere, (bob,))], None, 1
        )
        await side.send_to_bob(private_message(GROUP, 0, ciphertext=b"here" * 8))  # seq 2
        got = await pushed(session, 2)
        assert [m.seq for m in got] == [1, 2]
        assert reads == [bob, bob]  # the gap was read
        assert got == await harness.ctx.storage.fetch(bob, 0, 100)
        await session.disconnect()
