"""A server with its media relay on real loopback sockets, in this test's event loop, and the
helpers to put devices in a call.

`relay_server` runs the app under uvicorn (HTTP and the WebSocket fallback on a TCP port) with
the QUIC relay on a UDP port, so a test can reach both transports and still look inside: the
`Relay` (``server.relay``) and the `Forwarder` it was given. `Recorder` keeps every frame the
relay forwarded; `Lossy` drops a share of frames at random (seeded), `Reordering` reverses
groups of frames, and `Scripted` does whatever a test scripts per frame (tamper, replay,
duplicate, drop); any other `Forwarder` works too (see `doorless.server.relay.hub`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from doorless.client import Argon2Params, Client, ClientOptions
from doorless.client.transport import Transport
from doorless.server.app import create_app
from doorless.server.context import ServerContext
from doorless.server.relay import Bridge, Deliver, ForwardedFrame, Forwarder, Relay
from support.servers import free_port, generous_config


class Recorder:
    """A forwarder that delivers every frame unchanged and keeps a copy of it."""

    def __init__(self) -> None:
        self.frames: list[ForwardedFrame] = []

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        self.frames.append(frame)
        deliver(frame.data)


class Lossy:
    """Drops each frame with probability ``rate`` (a seeded generator: runs repeat), counting
    what it dropped; the rest are delivered unchanged."""

    def __init__(self, rate: float = 0.05, seed: int = 13) -> None:
        self.rate = rate
        self._random = random.Random(seed)
        self.dropped = 0
        self.delivered = 0

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        if self._random.random() < self.rate:
            self.dropped += 1
            return
        self.delivered += 1
        deliver(frame.data)


class Scripted:
    """A malicious relay: ``script(frame, history)`` returns the list of byte strings to deliver
    for this frame (empty: drop it; the same twice: duplicate; an earlier frame of ``history``:
    replay; changed bytes: tamper). ``history`` holds every frame that came in, oldest first."""

    def __init__(self, script: Callable[[ForwardedFrame, list[ForwardedFrame]], list[bytes]]):
        self._script = script
        self.history: list[ForwardedFrame] = []

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        self.history.append(frame)
        for data in self._script(frame, self.history):
            deliver(data)


class Reordering:
    """Holds frames back and delivers each group of ``size`` in reverse order."""

    def __init__(self, size: int = 3) -> None:
        self._size = size
        self._held: list[tuple[bytes, Deliver]] = []

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        self._held.append((frame.data, deliver))
        if len(self._held) >= self._size:
            held, self._held = self._held, []
            for data, send in reversed(held):
                send(data)


@dataclass
class RelayServer:
    url: str
    app: Any
    ctx: ServerContext
    data_dir: Path
    forwarder: Forwarder | None
    _server: uvicorn.Server = field(repr=False)

    @property
    def relay(self) -> Relay:
        assert self.ctx.relay is not None
        return self.ctx.relay


@asynccontextmanager
async def relay_server(
    data_dir: Path,
    *,
    forwarder: Forwarder | None = None,
    bridge: Bridge | None = None,
    quic: bool = True,
    **overrides: Any,
) -> AsyncIterator[RelayServer]:
    config = generous_config(data_dir, relay_port=0 if quic else None, **overrides)
    app = create_app(
        config, background_sweeper=False, relay_bridge=bridge, relay_forwarder=forwarder
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_max_size=64 * 1024,
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise AssertionError("the relay server did not start")
        await asyncio.sleep(0.01)
    try:
        yield RelayServer(
            f"http://127.0.0.1:{port}", app, app.state.ctx, data_dir, forwarder, server
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.01)


PASSPHRASE = "relay test passphrase"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)


def options(**overrides: Any) -> ClientOptions:
    base = ClientOptions(push=False, argon2=FAST_ARGON2, key_package_target=4, backoff=0.05)
    return dataclasses.replace(base, **overrides)


async def account(server_url: str, root: Path, name: str) -> Client:
    return await Client.create_account(
        root / name, PASSPHRASE, server_url=server_url, username=name, options=options()
    )


async def group_with(owner: Client, *others: Client) -> bytes:
    """``owner``'s group with ``others`` (synced everywhere); its MLS group id."""
    conversation = await owner.create_group("call", [c.username for c in others])
    for c in (owner, *others):
        await c.sync()
    return bytes.fromhex(conversation.id)


def transport_of(client: Client) -> Transport:
    """The client's API connection (the call engine reaches it the same way)."""
    return client._transport


__all__ = [
    "Lossy",
    "Recorder",
    "RelayServer",
    "Reordering",
    "Scripted",
    "account",
    "group_with",
    "options",
    "relay_server",
    "transport_of",
    "wait_for",
]
