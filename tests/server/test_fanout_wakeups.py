"""In-process fan-out: what a subscription's ``wait`` returns, and that it costs no task.

A pushing socket waits on its subscription once per wake-up; `asyncio.wait_for` ran each wait
in a task of its own. `doorless.server.fanout.base.Wakeups` waits on one future with a timer.
"""

from __future__ import annotations

import asyncio

import pytest

from doorless.server.fanout.base import CARRY_BYTES, CARRY_LIMIT, Topic
from doorless.server.fanout.memory import MemoryFanout
from doorless.server.routes.ws import continuation
from doorless.wire.messages import QueuedMessage

pytestmark = pytest.mark.asyncio


async def test_topics_published_before_the_wait_are_returned_at_once() -> None:
    fanout = MemoryFanout()
    sub = await fanout.subscribe("d1")
    await fanout.publish(["d1", "d2"], Topic.queue)
    await fanout.publish(["d1"], Topic.keypackages)
    async with asyncio.timeout(1):
        assert await sub.wait(60) == {Topic.queue, Topic.keypackages}
    assert await sub.wait(0.01) == frozenset()  # taken: nothing new


async def test_a_wait_ends_on_publish_or_timeout() -> None:
    fanout = MemoryFanout()
    sub = await fanout.subscribe("d1")
    waiting = asyncio.create_task(sub.wait(60))
    await asyncio.sleep(0)
    await fanout.publish(["d1"], Topic.revoked)
    async with asyncio.timeout(1):
        assert await waiting == {Topic.revoked}
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await sub.wait(0.05) == frozenset()
    assert loop.time() - start >= 0.04
    await sub.close()
    assert fanout.subscriber_count("d1") == 0


async def test_a_cancelled_wait_leaves_the_subscription_usable() -> None:
    fanout = MemoryFanout()
    sub = await fanout.subscribe("d1")
    waiting = asyncio.create_task(sub.wait(60))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await fanout.publish(["d1"], Topic.queue)
    async with asyncio.timeout(1):
        assert await sub.wait(60) == {Topic.queue}


async def test_waiting_creates_no_task() -> None:
    fanout = MemoryFanout()
    subs = [await fanout.subscribe(f"d{i}") for i in range(20)]
    waits = [asyncio.create_task(s.wait(60)) for s in subs]
    await asyncio.sleep(0.01)
    # The test's own task and the 20 waits: no helper task per wait.
    assert len(asyncio.all_tasks()) == 1 + len(waits)
    await fanout.publish([f"d{i}" for i in range(20)], Topic.queue)
    async with asyncio.timeout(1):
        assert all(t == {Topic.queue} for t in await asyncio.gather(*waits))


def _entries(*seqs: int) -> tuple[QueuedMessage, ...]:
    return tuple(QueuedMessage(s, b"m%d" % s, 1, None) for s in seqs)


async def test_queue_wakeups_hand_over_what_the_send_committed() -> None:
    fanout = MemoryFanout()
    sub = await fanout.subscribe("d1")
    other = await fanout.subscribe("d2")
    await fanout.publish(["d1", "d2"], Topic.queue, {"d1": _entries(4), "d2": _entries(9)})
    await fanout.publish(["d1"], Topic.queue, {"d1": _entries(5, 6)})
    assert await sub.wait(0) == {Topic.queue}
    assert sub.take_queued() == _entries(4, 5, 6)
    assert sub.take_queued() == ()  # taken
    assert await other.wait(0) == {Topic.queue}
    assert other.take_queued() == _entries(9)


@pytest.mark.parametrize(
    "publications",
    [
        # A wake-up without entries (another node's send, a revocation's re-check): read.
        [_entries(1), None, _entries(2)],
        [None, _entries(1)],
        # The device is not among those the send queued for.
        [{}],
        # More than a slow socket may hold: read instead.
        [_entries(*range(1, CARRY_LIMIT + 1)), _entries(CARRY_LIMIT + 1)],
        [
            (QueuedMessage(1, bytes(CARRY_BYTES // 2), 1),),
            (QueuedMessage(2, bytes(CARRY_BYTES), 1),),
        ],
    ],
)
async def test_a_wakeup_without_the_entries_means_read_the_queue(
    publications: list[tuple[QueuedMessage, ...] | dict[str, object] | None],
) -> None:
    fanout = MemoryFanout()
    sub = await fanout.subscribe("d1")
    for queued in publications:
        carried = {"d1": queued} if isinstance(queued, tuple) else queued
        await fanout.publish(["d1"], Topic.queue, carried)  # type: ignore[arg-type]
    assert await sub.wait(0) == {Topic.queue}
    assert sub.take_queued() is None
    await fanout.publish(["d1"], Topic.queue, {"d1": _entries(8)})  # the next wait starts over
    assert await sub.wait(0) == {Topic.queue}
    assert sub.take_queued() == _entries(8)


@pytest.mark.parametrize(
    ("carried", "last", "pushed"),
    [
        (_entries(5), 4, [5]),
        (_entries(6, 5, 7), 4, [5, 6, 7]),  # handed over out of order (two sends' wake-ups)
        (_entries(3, 4, 5), 4, [5]),  # up to 4 was read from the queue already
        (_entries(3, 4), 4, []),
        (_entries(6), 4, None),  # 5 is missing (committed elsewhere): read
        (_entries(5, 7), 4, None),
        (_entries(5, 5), 4, None),
        ((), 4, None),  # nothing handed over: read
        (None, 4, None),
    ],
)
async def test_continuation(
    carried: tuple[QueuedMessage, ...] | None, last: int, pushed: list[int] | None
) -> None:
    got = continuation(carried, last)
    assert (None if got is None else [m.seq for m in got]) == pushed
