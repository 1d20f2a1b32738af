"""Fan-out: wake the connection(s) holding a device's socket when something is queued for it.

A wake-up carries only a topic, never data: the socket re-reads the durable queue, which stays
the single source of truth (a lost wake-up delays a push, it never loses a message). The
in-process implementation is `MemoryFanout`; a Redis pub/sub one (multi-node) comes later.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable
from enum import StrEnum


class Topic(StrEnum):
    queue = "queue"  # new messages in the device's queue
    keypackages = "keypackages"  # the device's one-time KeyPackages run low
    revoked = "revoked"  # the device was revoked: its sockets re-check their token and close


class Wakeups:
    """The topics published to one subscription since it last looked, and its waiter.

    A wait is one future and one timer handle: no task per wake-up (``asyncio.wait_for``
    creates one), which at 1,000 sockets woken nine at a time per send was a visible share of
    the event loop's time.
    """

    __slots__ = ("_topics", "_waiter")

    def __init__(self) -> None:
        self._topics: set[Topic] = set()
        self._waiter: asyncio.Future[None] | None = None

    def wake(self, topic: Topic) -> None:
        self._topics.add(topic)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> frozenset[Topic] | None:
        """The topics published since the last call (waiting for one if there are none), or
        None if ``timeout`` seconds passed first."""
        if not self._topics:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._topics:
                return None
        topics = frozenset(self._topics)
        self._topics.clear()
        return topics


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription(ABC):
    @abstractmethod
    async def wait(self, timeout: float) -> frozenset[Topic]:
        """Topics published since the last call; empty if ``timeout`` seconds passed first."""

    @abstractmethod
    async def close(self) -> None: ...


class Fanout(ABC):
    @abstractmethod
    async def subscribe(self, device_id: str) -> Subscription: ...

    @abstractmethod
    async def publish(self, device_ids: Iterable[str], topic: Topic) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (nothing to do in process)."""
