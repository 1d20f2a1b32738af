"""Test harness for the client library: an in-process server and clients bound to it.

The server is the real ASGI app over ``httpx.ASGITransport`` (no sockets), so clients poll
(`Client.sync`) instead of using the WebSocket; ``test_client_process.py`` runs a real server
process with push.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from doorless.client import (
    Argon2Params,
    Client,
    ClientOptions,
    Conversation,
    Event,
    ServerUnreachable,
)
from doorless.server.app import create_app
from doorless.server.config import ServerConfig

BASE_URL = "http://testserver"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSPHRASE = "correct horse battery staple"

E = TypeVar("E")


def server_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    base = ServerConfig(
        data_dir=data_dir,
        rate_per_second=10_000.0,
        rate_burst=1_000_000,
        anon_rate_per_second=10_000.0,
        anon_rate_burst=1_000_000,
    )
    return dataclasses.replace(base, **overrides)


class Network:
    """One in-process server and the clients of a test."""

    def __init__(self, app: Any, root: Path, config: ServerConfig) -> None:
        self.app = app
        self.root = root
        self.config = config
        self.clients: list[Client] = []
        self.profiles: dict[str, Path] = {}

    def options(self, **overrides: Any) -> ClientOptions:
        base = ClientOptions(
            push=False,
            http_transport=httpx.ASGITransport(app=self.app),
            argon2=FAST_ARGON2,
            key_package_target=12,
            retries=0,
        )
        return dataclasses.replace(base, **overrides)

    def profile(self, name: str) -> Path:
        return self.root / "profiles" / name

    async def user(self, username: str, profile: str | None = None, **options: Any) -> Client:
        name = profile or username
        client = await Client.create_account(
            self.profile(name),
            PASSPHRASE,
            server_url=BASE_URL,
            username=username,
            device_name=name,
            options=self.options(**options),
        )
        self.profiles[client.device_id] = self.profile(name)
        self.clients.append(client)
        return client

    async def link(self, owner: Client, profile: str) -> Client:
        """A new device of ``owner``'s account, approved by ``owner`` (and added to its
        conversations)."""
        link = await Client.begin_link(
            self.profile(profile),
            PASSPHRASE,
            server_url=BASE_URL,
            username=owner.username,
            device_name=profile,
            options=self.options(),
        )
        pending = await owner.get_link(link.code)
        assert pending.fingerprint() == link.fingerprint()
        # The new device uploads its KeyPackages while the owner waits for them.
        new, _ = await asyncio.gather(
            link.complete(timeout=10, poll_interval=0.05),
            owner.approve_link(pending, key_package_timeout=10),
        )
        self.profiles[new.device_id] = self.profile(profile)
        self.clients.append(new)
        return new

    async def reopen(self, client: Client, **overrides: Any) -> Client:
        """Close a client and open its profile again (a restart)."""
        profile = self.profiles[client.device_id]
        await client.close()
        self.clients.remove(client)
        again = await Client.open(profile, PASSPHRASE, options=self.options(**overrides))
        self.profiles[again.device_id] = profile
        self.clients.append(again)
        return again

    async def sync_all(self, *clients: Client, rounds: int = 2) -> None:
        for _ in range(rounds):
            for c in clients or tuple(self.clients):
                await c.sync()

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


@asynccontextmanager
async def network(root: Path, **config: Any) -> AsyncIterator[Network]:
    cfg = server_config(root / "server", **config)
    app = create_app(cfg, background_sweeper=False)
    async with app.router.lifespan_context(app):
        net = Network(app, root, cfg)
        try:
            yield net
        finally:
            await net.close()


def take_events(client: Client) -> list[Event]:
    """The events emitted since the last call (nobody iterates `events()` in these tests, so
    the client keeps them in its backlog)."""
    hub = client._hub
    events = list(hub._backlog)
    hub._backlog.clear()
    return events


def of_type(events: list[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


async def mls_state(client: Client, conversation: Conversation) -> Any:
    """The client's MLS group state of a conversation (white box, for convergence checks)."""
    conv = await client._load(bytes.fromhex(conversation.id))
    assert conv is not None
    return conv.mls


class Unreachable:
    """Wraps a transport method: ``fail_before`` calls fail without reaching the server,
    ``fail_after`` calls reach it and then lose the answer."""

    def __init__(self, method: Callable[..., Any], *, before: int = 0, after: int = 0) -> None:
        self.method = method
        self.before = before
        self.after = after
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.before > 0:
            self.before -= 1
            raise ServerUnreachable("test: no connection")
        result = await self.method(*args, **kwargs)
        if self.after > 0:
            self.after -= 1
            raise ServerUnreachable("test: the answer was lost")
        return result


def now_ms() -> int:
    return int(time.time() * 1000)
