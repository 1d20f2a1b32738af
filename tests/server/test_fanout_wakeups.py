"""In-process fan-out: what a subscription's ``wait`` returns, and that it costs no task.

A pushing socket waits on its subscription once per wake-up; `asyncio.wait_for` ran each wait
in a task of its own. `doorless.server.fanout.base.Wakeups` waits on one future with a timer.
"""

from __future__ import annotations

import asyncio

import pytest

from doorless.server.fanout.base import Topic
from doorless.server.fanout.memory import MemoryFanout

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
