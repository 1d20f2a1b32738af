"""Fan-out across server processes: Redis pub/sub, one channel per device.

A process that holds a device's socket subscribes to ``<prefix>d:<device_id>``; a process that
queued something for a device publishes the topic there (one pipelined round trip per send).
Subscribers in the publishing process itself are woken directly (with the entries the send
queued, `doorless.server.fanout.base`), and each process ignores its own publications, so a
node never waits for Redis to wake its own sockets; the other nodes' sockets read their queues.

A wake-up through Redis only tells a socket to re-read the durable queue; losing one delays a
push and never loses a message. That makes Redis failures cheap to survive:

* When Redis is unreachable (or silent for two ping intervals), the process marks the fan-out
  down: publishing skips Redis, and every local subscription wakes at least every
  ``fallback_poll`` seconds so the push sockets re-read their queues ("fetch fallback"): delivery
  goes on, a little later. Nothing a client does changes.
* The listener reconnects with backoff. Once every local channel is subscribed again (Redis
  confirms subscriptions in order, so the confirmation of a marker channel subscribed last
  proves the rest), every local subscription is woken once, catching up on whatever was
  published meanwhile, and the fan-out is up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from doorless.server.fanout.base import Fanout, Queued, Subscription, Topic, Wakeups
from doorless.server.log import log_event
from doorless.wire.messages import QueuedMessage

_TOPICS = {t.value: t for t in Topic}


class _RedisSubscription(Subscription):
    def __init__(self, owner: RedisFanout, device_id: str) -> None:
        self._owner = owner
        self.device_id = device_id
        self._wakeups = Wakeups()
        self._wake = self._wakeups.wake

    async def wait(self, timeout: float) -> frozenset[Topic]:
        degraded = not self._owner.connected
        if degraded:
            timeout = min(timeout, self._owner.fallback_poll)
        topics = await self._wakeups.wait(timeout)
        if topics is None:
            # Without Redis nobody can tell us about sends on other nodes: look anyway.
            return frozenset({Topic.queue}) if degraded else frozenset()
        return topics

    def take_queued(self) -> tuple[QueuedMessage, ...] | None:
        return self._wakeups.take_queued()

    async def close(self) -> None:
        await self._owner._remove(self)


class RedisFanout(Fanout):
    """``RedisFanout("redis://host:6379/0")``; every server process of a deployment uses the
    same URL and ``channel_prefix``."""

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "doorless:",
        fallback_poll: float = 1.0,
        timeout: float = 1.0,
        ping_interval: float = 2.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._url = url
        self._prefix = channel_prefix
        self.fallback_poll = fallback_poll
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self.node_id = secrets.token_hex(8)  # tells our own publications apart
        self._marker = f"{channel_prefix}node:{self.node_id}"
        self._client: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None  # redis.asyncio.client.PubSub of the current connection
        self._active: set[str] = set()  # device channels SUBSCRIBEd on that connection
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._local: dict[str, set[_RedisSubscription]] = {}
        self._connected = False
        self._connected_event = asyncio.Event()
        self._broken = False  # a command on the listener's connection failed: reconnect
        self._first_attempt = asyncio.Event()  # set once the first connection attempt ended
        self._known_down = False  # the last connection attempt failed (publishing skips Redis)
        self._closed = False

    # --- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while every local channel is known to be subscribed on Redis."""
        return self._connected

    async def wait_connected(self, timeout: float) -> bool:
        """Start if needed and wait until subscribed on Redis; False after ``timeout``."""
        self._start()
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        if not self._closed:
            log_event(
                "fanout redis " + ("up" if connected else "down"),
                logging.INFO if connected else logging.WARNING,
            )
        # Up: catch up on what was published while we were not listening. Down: make every
        # socket re-read now and then poll (`_RedisSubscription.wait`).
        for subs in self._local.values():
            for sub in subs:
                sub._wake(Topic.queue)

    def _channel(self, device_id: str) -> str:
        return f"{self._prefix}d:{device_id}"

    def _start(self) -> None:
        if self._closed:
            return
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),  # we decide what a failure means
                decode_responses=True,
            )
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="doorless-fanout-redis")

    # --- the interface ---------------------------------------------------------------------

    async def subscribe(self, device_id: str) -> Subscription:
        self._start()
        if not self._first_attempt.is_set():
            # A fresh process: give the first connection a moment, so the first sockets are
            # subscribed on Redis rather than polling (no wait at all during an outage).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), self._timeout)
        sub = _RedisSubscription(self, device_id)
        self._local.setdefault(device_id, set()).add(sub)
        if self._connected:
            await self._sync_or_reconnect()
            waiter = self._pending.get(self._channel(device_id))
            if waiter is not None:
                # Subscribed before the socket's first read of its queue, so nothing
                # published after that read can be missed. (Waiters are released when the
                # connection drops: the socket then polls.)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
        return sub

    async def _remove(self, sub: _RedisSubscription) -> None:
        subs = self._local.get(sub.device_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._local[sub.device_id]
            if self._connected:
                await self._sync_or_reconnect()

    async def publish(
        self, device_ids: Iterable[str], topic: Topic, queued: Queued | None = None
    ) -> None:
        targets = list(dict.fromkeys(device_ids))
        for device_id in targets:
            carried = None if queued is None else queued.get(device_id)
            for sub in self._local.get(device_id, ()):
                sub._wake(topic, carried)
        self._start()
        if not targets or self._known_down or self._client is None:
            return  # the queue is durable: sockets elsewhere poll while Redis is away
        message = f"{self.node_id}:{topic.value}"
        for attempt in range(2):  # the second try gets a fresh connection from the pool
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for device_id in targets:
                        pipe.publish(self._channel(device_id), message)
                    await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                # Never fail a send that is already committed: a lost wake-up only delays
                # the push until the recipient's socket looks again (its idle timeout, or
                # polling once the nodes notice that Redis is gone).
                if attempt == 1:
                    log_event(
                        "fanout publish failed", logging.WARNING, exception=type(exc).__name__
                    )

    async def close(self) -> None:
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            # redis-py can swallow a cancellation that lands while `get_message` times out,
            # so cancel until the task is done (and the loop also checks `_closed`).
            while not listener.done():
                listener.cancel()
                await asyncio.wait({listener}, timeout=0.5)
            if not listener.cancelled() and listener.exception() is not None:
                log_event(
                    "fanout listener failed",
                    logging.WARNING,
                    exception=type(listener.exception()).__name__,
                )
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        self._connected = False

    def subscriber_count(self, device_id: str) -> int:
        return len(self._local.get(device_id, ()))

    # --- the listener ----------------------------------------------------------------------

    async def _sync_or_reconnect(self) -> None:
        try:
            await self._sync()
        except (RedisError, OSError) as exc:
            log_event("fanout subscribe failed", logging.WARNING, exception=type(exc).__name__)
            self._broken = True  # the listener reconnects (and resubscribes everything)
            self._set_connected(False)

    async def _sync(self) -> None:
        """Make the channels subscribed on Redis match the local subscriptions."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        want = set(self._local)
        add = sorted(want - self._active)
        remove = sorted(self._active - want)
        # Bookkeeping before the await: a concurrent _sync sends only the difference.
        self._active |= set(add)
        self._active -= set(remove)
        loop = asyncio.get_running_loop()
        for device_id in add:
            self._pending.setdefault(self._channel(device_id), loop.create_future())
        if add:
            await pubsub.subscribe(*(self._channel(d) for d in add))
        if remove:
            await pubsub.unsubscribe(*(self._channel(d) for d in remove))

    def _resolve(self, channel: str) -> None:
        waiter = self._pending.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = str(message.get("channel", ""))
        if kind == "subscribe":
            if channel == self._marker:
                self._known_down = False
                self._set_connected(True)
                self._first_attempt.set()
            else:
                self._resolve(channel)
            return
        if kind != "message" or not channel.startswith(self._prefix + "d:"):
            return  # pong, unsubscribe confirmations
        node, _, topic_name = str(message.get("data", "")).partition(":")
        topic = _TOPICS.get(topic_name)
        if node == self.node_id or topic is None:
            return  # woken directly when we published it; or a topic we do not know
        for sub in self._local.get(channel[len(self._prefix) + 2 :], ()):
            sub._wake(topic)

    async def _listen(self) -> None:
        backoff = 0.05
        loop = asyncio.get_running_loop()
        assert self._client is not None
        while not self._closed:
            pubsub: Any = self._client.pubsub()
            try:
                self._pubsub = pubsub
                self._active = set()
                self._broken = False
                await self._sync()  # every local channel ...
                await pubsub.subscribe(self._marker)  # ... then the marker, confirmed last
                last_heard = loop.time()
                while not self._broken and not self._closed:
                    message = await pubsub.get_message(timeout=self._ping_interval)
                    now = loop.time()
                    if message is None:
                        if now - last_heard > 2 * self._ping_interval:
                            raise TimeoutError("redis did not answer a ping")
                        await pubsub.ping()
                        continue
                    last_heard = now
                    if self._connected and backoff > 0.05:
                        backoff = 0.05
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, AttributeError, RuntimeError) as exc:
                self._known_down = True
                if self._connected:
                    log_event("fanout redis lost", logging.WARNING, exception=type(exc).__name__)
            finally:
                self._pubsub = None
                self._active = set()
                for channel in list(self._pending):
                    self._resolve(channel)
                self._set_connected(False)
                self._first_attempt.set()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)
