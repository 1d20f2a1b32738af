"""Fan-out: wake the connection(s) holding a device's socket when something is queued for it.

A wake-up carries only a topic, never data: the socket re-reads the durable queue, which stays
the single source of truth (a lost wake-up delays a push, it never loses a message). The
in-process implementation is `MemoryFanout`; a Redis pub/sub one (multi-node) comes later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from enum import StrEnum


class Topic(StrEnum):
    queue = "queue"  # new messages in the device's queue
    keypackages = "keypackages"  # the device's one-time KeyPackages run low
    revoked = "revoked"  # the device was revoked: its sockets re-check their token and close


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
