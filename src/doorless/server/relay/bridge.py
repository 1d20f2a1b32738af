"""Calls across server nodes: a `Bridge` carries frames between the nodes that hold
participants of the same call, and "this group's members changed" to every node.

* `LocalBridge` (one process, the default): nothing to carry.
* `RedisBridge` (``doorless server --redis URL``): Redis pub/sub. A node with participants of a
  call subscribes to ``<prefix>relay:c:<group hex>:<call hex>`` and publishes every frame that
  entered it there, prefixed with its node id (so it ignores its own); every node subscribes to
  ``<prefix>relay:g`` for membership changes (the message is the group id; each node re-reads
  membership from the database, the one source of truth).

Media is lossy by nature: a frame that cannot be published (Redis away, queue full) is dropped
and counted, never retried. Redis holds nothing: pub/sub keeps no history (no media at rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from doorless.server.log import log_event

OnFrame = Callable[["CallKey", bytes], None]
OnGroupChanged = Callable[[bytes], Awaitable[None]]

_NODE_ID_LENGTH = 8
_QUEUE = 4096  # frames waiting to be published; beyond that they are dropped


@dataclass(frozen=True, slots=True)
class CallKey:
    group_id: bytes
    call_id: bytes


class Bridge(ABC):
    @abstractmethod
    async def start(self, on_frame: OnFrame, on_group_changed: OnGroupChanged) -> None: ...

    @abstractmethod
    async def join(self, call: CallKey) -> None:
        """This node has a first participant of ``call``: receive its frames from others."""

    @abstractmethod
    def leave(self, call: CallKey) -> None:
        """This node's last participant of ``call`` left."""

    @abstractmethod
    def publish_frame(self, call: CallKey, data: bytes) -> None:
        """Send a frame to the other nodes of the call (never waits; may drop)."""

    @abstractmethod
    async def publish_group_changed(self, group_id: bytes) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class LocalBridge(Bridge):
    """A single node: every participant is here."""

    async def start(self, on_frame: OnFrame, on_group_changed: OnGroupChanged) -> None:
        return None

    async def join(self, call: CallKey) -> None:
        return None

    def leave(self, call: CallKey) -> None:
        return None

    def publish_frame(self, call: CallKey, data: bytes) -> None:
        return None

    async def publish_group_changed(self, group_id: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBridge(Bridge):
    """See the module docstring. ``dropped`` counts frames not published."""

    def __init__(self, url: str, *, channel_prefix: str = "doorless:") -> None:
        self._url = url
        self._prefix = channel_prefix
        self.node_id = secrets.token_bytes(_NODE_ID_LENGTH)
        self._groups_channel = f"{channel_prefix}relay:g".encode()
        self._client: Any = None
        self._pubsub: Any = None
        self._on_frame: OnFrame | None = None
        self._on_group_changed: OnGroupChanged | None = None
        self._outbox: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[bytes, CallKey] = {}
        # False until every channel is subscribed on Redis (at start, after an outage): the
        # listener (re)subscribes them. A node starts and serves its own calls while Redis is
        # down; only participants on other nodes wait for it (as the fan-out does).
        self._subscribed = False
        self.dropped = 0

    def _channel(self, call: CallKey) -> bytes:
        return f"{self._prefix}relay:c:{call.group_id.hex()}:{call.call_id.hex()}".encode()

    async def start(self, on_frame: OnFrame, on_group_changed: OnGroupChanged) -> None:
        import redis.asyncio as aioredis

        self._on_frame, self._on_group_changed = on_frame, on_group_changed
        self._client = aioredis.Redis.from_url(self._url, decode_responses=False)
        self._pubsub = self._client.pubsub()
        await self._resubscribe()
        self._tasks = [
            asyncio.create_task(self._listen(), name="doorless-relay-bridge-listen"),
            asyncio.create_task(self._publish_loop(), name="doorless-relay-bridge-publish"),
        ]

    async def join(self, call: CallKey) -> None:
        from redis.exceptions import RedisError

        channel = self._channel(call)
        self._channels[channel] = call
        try:
            await self._pubsub.subscribe(channel)
        except (RedisError, OSError) as exc:
            self._subscribed = False  # the listener subscribes it once Redis is back
            log_event(
                "relay bridge subscribe failed", logging.WARNING, exception=type(exc).__name__
            )

    async def _resubscribe(self) -> None:
        """Subscribe the group channel and every call's; on failure, left to the listener."""
        from redis.exceptions import RedisError

        try:
            await self._pubsub.subscribe(self._groups_channel, *self._channels)
        except (RedisError, OSError) as exc:
            self._subscribed = False
            log_event(
                "relay bridge subscribe failed", logging.WARNING, exception=type(exc).__name__
            )
            return
        self._subscribed = True

    def leave(self, call: CallKey) -> None:
        channel = self._channel(call)
        if self._channels.pop(channel, None) is not None:
            task = asyncio.get_running_loop().create_task(self._pubsub.unsubscribe(channel))
            self._tasks.append(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def publish_frame(self, call: CallKey, data: bytes) -> None:
        try:
            self._outbox.put_nowait((self._channel(call), self.node_id + data))
        except asyncio.QueueFull:
            self.dropped += 1

    async def publish_group_changed(self, group_id: bytes) -> None:
        from redis.exceptions import RedisError

        try:
            await self._client.publish(self._groups_channel, self.node_id + group_id)
        except (RedisError, OSError) as exc:
            # The commit is stored; the other nodes' periodic membership recheck (30 s) drops
            # the removed devices there instead.
            log_event("relay bridge publish failed", logging.WARNING, exception=type(exc).__name__)

    async def _publish_loop(self) -> None:
        from redis.exceptions import RedisError

        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self.dropped += len(batch)
                log_event(
                    "relay bridge publish failed", logging.WARNING, exception=type(exc).__name__
                )

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        while True:
            if not self._subscribed:
                await self._resubscribe()
                if not self._subscribed:
                    await asyncio.sleep(0.5)
                    continue
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except (RedisError, OSError) as exc:
                log_event(
                    "relay bridge listen failed", logging.WARNING, exception=type(exc).__name__
                )
                self._subscribed = False  # resubscribe everything after the outage
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            await self._handle(bytes(message["channel"]), bytes(message["data"]))

    async def _handle(self, channel: bytes, data: bytes) -> None:
        node, body = data[:_NODE_ID_LENGTH], data[_NODE_ID_LENGTH:]
        if node == self.node_id:
            return
        if channel == self._groups_channel:
            assert self._on_group_changed is not None
            await self._on_group_changed(body)
            return
        call = self._channels.get(channel)
        if call is not None and self._on_frame is not None:
            self._on_frame(call, body)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()


__all__ = ["Bridge", "CallKey", "LocalBridge", "RedisBridge"]
