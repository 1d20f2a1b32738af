"""An in-memory media relay for in-process call tests: forwards every frame a participant
sends to the others, records everything it forwards (to show it cannot listen), and lets a
test act as a malicious relay (``meddle`` rewrites each forwarded frame into any list of
frames: drop, alter, duplicate, reorder; `inject` sends a forged frame to one device)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Meddler = Callable[[str, bytes], list[bytes]]  # (sender name, frame) -> frames to forward


class ChannelClosed(Exception):
    pass


class MemoryChannel:
    """One device's connection to the `MemoryRelay` (the engine's `MediaChannel`)."""

    def __init__(self, relay: MemoryRelay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def send(self, stream: int, frame: bytes) -> None:
        if not self.closed:
            self.relay.forward(self.name, frame)

    async def receive(self) -> bytes:
        frame = await self.inbox.get()
        if frame is None:
            raise ChannelClosed(self.name)
        return frame

    def pending(self) -> list[bytes]:
        """Every frame waiting for this device (without waiting)."""
        out = []
        while not self.inbox.empty():
            frame = self.inbox.get_nowait()
            if frame is not None:
                out.append(frame)
        return out

    async def close(self) -> None:
        self.closed = True
        self.relay.channels.pop(self.name, None)
        self.inbox.put_nowait(None)


class MemoryRelay:
    def __init__(self) -> None:
        self.channels: dict[str, MemoryChannel] = {}
        self.recorded: list[tuple[str, bytes]] = []
        self.meddle: Meddler | None = None

    def channel(self, name: str) -> MemoryChannel:
        ch = self.channels[name] = MemoryChannel(self, name)
        return ch

    def forward(self, sender: str, frame: bytes) -> None:
        self.recorded.append((sender, frame))
        frames = self.meddle(sender, frame) if self.meddle is not None else [frame]
        for name, ch in list(self.channels.items()):
            if name != sender:
                for f in frames:
                    ch.inbox.put_nowait(f)

    def inject(self, to: str, frame: bytes) -> None:
        self.channels[to].inbox.put_nowait(frame)
