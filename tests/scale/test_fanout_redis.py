"""The Redis fan-out between two "processes" (two `RedisFanout` instances), and what happens
when Redis goes away and comes back (our own redis-server, killed and restarted)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from doorless.server.fanout.base import Topic
from doorless.server.fanout.redis import RedisFanout
from doorless.wire.messages import QueuedMessage
from support.servers import free_port

from .conftest import OwnRedis

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def fanouts(url: str, count: int = 2, **kwargs: float) -> AsyncIterator[list[RedisFanout]]:
    prefix = f"dltest:{secrets.token_hex(4)}:"  # parallel tests never hear each other
    nodes = [RedisFanout(url, channel_prefix=prefix, **kwargs) for _ in range(count)]
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def test_a_publish_on_one_node_wakes_the_socket_on_another(redis_url: str) -> None:
    async with fanouts(redis_url) as (a, b):
        sub = await b.subscribe("dev1")
        assert await b.wait_connected(5)
        other = await b.subscribe("dev2")
        started = time.monotonic()
        await a.publish(["dev1", "dev3"], Topic.queue)
        assert await sub.wait(5) == {Topic.queue}
        assert time.monotonic() - started < 1.0
        assert await other.wait(0.2) == frozenset()  # not addressed to dev2
        await a.publish(["dev1"], Topic.keypackages)
        assert await sub.wait(5) == {Topic.keypackages}
        await sub.close()
        await other.close()


async def test_own_publications_wake_directly_and_once(redis_url: str) -> None:
    async with fanouts(redis_url, 1) as (a,):
        sub = await a.subscribe("dev1")
        assert await a.wait_connected(5)
        await a.publish(["dev1"], Topic.queue)
        assert await sub.wait(0) == {Topic.queue}  # no Redis round trip needed
        assert await sub.wait(0.3) == frozenset()  # and the echo from Redis is ignored
        await sub.close()


async def test_only_the_publishing_nodes_sockets_are_handed_the_entries(redis_url: str) -> None:
    """The committed entries go to the sockets of the process that committed them; a socket
    on another node is only woken, and reads its queue (take_queued: None)."""
    entry = QueuedMessage(7, b"ciphertext", 1, b"frank")
    async with fanouts(redis_url) as (a, b):
        here = await a.subscribe("dev1")
        there = await b.subscribe("dev1")
        assert await a.wait_connected(5) and await b.wait_connected(5)
        await a.publish(["dev1"], Topic.queue, {"dev1": (entry,)})
        assert await here.wait(0) == {Topic.queue}
        assert here.take_queued() == (entry,)
        assert await there.wait(5) == {Topic.queue}
        assert there.take_queued() is None
        await here.close()
        await there.close()


async def test_the_last_local_subscription_unsubscribes(redis_url: str) -> None:
    async with fanouts(redis_url, 1) as (a,):
        s1 = await a.subscribe("dev1")
        s2 = await a.subscribe("dev1")
        assert await a.wait_connected(5)
        channel = a._channel("dev1")
        client = aioredis.Redis.from_url(redis_url)
        try:

            async def subscribers() -> int:
                counts = await client.pubsub_numsub(channel)
                return int(counts[0][1])

            assert await subscribers() == 1
            await s1.close()
            assert a.subscriber_count("dev1") == 1 and await subscribers() == 1
            await s2.close()
            assert a.subscriber_count("dev1") == 0
            for _ in range(50):
                if await subscribers() == 0:
                    break
                await asyncio.sleep(0.02)
            assert await subscribers() == 0
        finally:
            await client.aclose()


async def test_without_redis_sockets_poll_and_sends_still_succeed() -> None:
    closed_port = free_port()  # nothing listens there
    async with fanouts(f"redis://127.0.0.1:{closed_port}/0", fallback_poll=0.2) as (a, b):
        sub = await b.subscribe("dev1")
        await a.publish(["dev1"], Topic.queue)  # must not raise
        assert not a.connected and not b.connected
        started = time.monotonic()
        assert await sub.wait(30) == {Topic.queue}  # the poll, not the 30 s idle timeout
        assert time.monotonic() - started < 1.0
        await sub.close()


async def test_redis_restart_degrades_to_polling_then_recovers(own_redis: OwnRedis) -> None:
    async with fanouts(own_redis.url, fallback_poll=0.3, ping_interval=0.5) as (a, b):
        sub = await b.subscribe("dev1")
        assert await a.wait_connected(5) and await b.wait_connected(5)
        await a.publish(["dev1"], Topic.queue)
        assert await sub.wait(5) == {Topic.queue}

        own_redis.stop()
        # The listener notices (connection reset) and wakes every local socket once ...
        assert await sub.wait(5) == {Topic.queue}
        assert not b.connected
        await a.publish(["dev1"], Topic.queue)  # never raises, even now
        # ... after which sockets poll every fallback_poll seconds.
        started = time.monotonic()
        assert await sub.wait(30) == {Topic.queue}
        assert time.monotonic() - started < 1.5

        own_redis.start()
        assert await a.wait_connected(10) and await b.wait_connected(10)
        # Reconnecting wakes the socket (catch-up for what was published meanwhile) ...
        assert await sub.wait(5) == {Topic.queue}
        while await sub.wait(0.1):
            pass
        # ... and cross-node wake-ups work again, with no polling.
        await a.publish(["dev1"], Topic.keypackages)
        assert await sub.wait(5) == {Topic.keypackages}
        assert await sub.wait(0.6) == frozenset()  # connected again: no poll wake-ups
        await sub.close()
