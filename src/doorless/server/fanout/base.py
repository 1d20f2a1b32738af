"""Fan-out: wake the connection(s) holding a device's socket when something is queued for it.

The durable queue stays the single source of truth: a lost wake-up delays a push, it never
loses a message. A wake-up carries a topic; a ``queue`` wake-up published by the process that
committed the send also hands that process's own sockets the committed entries
(`doorless.server.storage.base.DeliveryResult.queued`), so a socket whose last pushed seq they
continue pushes them without reading the queue (`doorless.server.routes.ws`); a socket woken
without them, from another process or with a gap before them, reads the queue. The in-process
implementation is `MemoryFanout`; across processes, `doorless.server.fanout.redis`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

from doorless.wire.messages import QueuedMessage

# What a send queued, per device (`doorless.server.storage.base.DeliveryResult.queued`).
Queued = Mapping[str, Sequence[QueuedMessage]]

# A socket whose wake-ups hand over more than this (entries, bytes) before it takes them reads
# the queue instead: a slow reader holds no more than one page of its queue would.
CARRY_LIMIT = 100
CARRY_BYTES = 1 << 20


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

    __slots__ = ("_carried", "_carried_bytes", "_reread", "_topics", "_waiter")

    def __init__(self) -> None:
        self._topics: set[Topic] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._carried: list[QueuedMessage] = []
        self._carried_bytes = 0
        self._reread = False

    def wake(self, topic: Topic, carried: Sequence[QueuedMessage] | None = None) -> None:
        """``carried``: the entries a ``queue`` wake-up is about, if known (None: read the
        queue)."""
        if topic is Topic.queue and not self._reread:
            size = 0 if carried is None else sum(len(m.data) for m in carried)
            if (
                carried is None
                or len(self._carried) + len(carried) > CARRY_LIMIT
                or self._carried_bytes + size > CARRY_BYTES
            ):
                self._reread = True
                self._carried.clear()
                self._carried_bytes = 0
            else:
                self._carried.extend(carried)
                self._carried_bytes += size
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

    def take_queued(self) -> tuple[QueuedMessage, ...] | None:
        """The entries carried by the ``queue`` wake-ups since the last call, or None if one
        of them came without (the socket must read its queue)."""
        carried = None if self._reread else tuple(self._carried)
        self._carried.clear()
        self._carried_bytes = 0
        self._reread = False
        return carried


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription(ABC):
    @abstractmethod
    async def wait(self, timeout: float) -> frozenset[Topic]:
        """Topics published since the last call; empty if ``timeout`` seconds passed first."""

    @abstractmethod
    def take_queued(self) -> tuple[QueuedMessage, ...] | None:
        """`Wakeups.take_queued`: call right after `wait` returned the ``queue`` topic."""

    @abstractmethod
    async def close(self) -> None: ...


class Fanout(ABC):
    @abstractmethod
    async def subscribe(self, device_id: str) -> Subscription: ...

    @abstractmethod
    async def publish(
        self, device_ids: Iterable[str], topic: Topic, queued: Queued | None = None
    ) -> None:
        """Wake the sockets of ``device_ids``; ``queued`` (``queue`` wake-ups of a committed
        send): the entries it queued per device, handed to this process's own sockets."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (nothing to do in process)."""
