"""In-process fan-out: one asyncio event per subscription (single server process)."""

from __future__ import annotations

from collections.abc import Iterable

from doorless.server.fanout.base import Fanout, Queued, Subscription, Topic, Wakeups
from doorless.wire.messages import QueuedMessage


class _MemorySubscription(Subscription):
    def __init__(self, owner: MemoryFanout, device_id: str) -> None:
        self._owner = owner
        self._device_id = device_id
        self._wakeups = Wakeups()
        self._wake = self._wakeups.wake

    async def wait(self, timeout: float) -> frozenset[Topic]:
        return await self._wakeups.wait(timeout) or frozenset()

    def take_queued(self) -> tuple[QueuedMessage, ...] | None:
        return self._wakeups.take_queued()

    async def close(self) -> None:
        self._owner._remove(self._device_id, self)


class MemoryFanout(Fanout):
    def __init__(self) -> None:
        self._subs: dict[str, set[_MemorySubscription]] = {}

    async def subscribe(self, device_id: str) -> Subscription:
        sub = _MemorySubscription(self, device_id)
        self._subs.setdefault(device_id, set()).add(sub)
        return sub

    def _remove(self, device_id: str, sub: _MemorySubscription) -> None:
        subs = self._subs.get(device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[device_id]

    async def publish(
        self, device_ids: Iterable[str], topic: Topic, queued: Queued | None = None
    ) -> None:
        for device_id in device_ids:
            carried = None if queued is None else queued.get(device_id)
            for sub in self._subs.get(device_id, ()):
                sub._wake(topic, carried)

    def subscriber_count(self, device_id: str) -> int:
        return len(self._subs.get(device_id, ()))
