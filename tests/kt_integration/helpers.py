"""An in-process server with its transparency log, witnesses, and misbehaving variants.

The adversarial server is real: a second app over a *copy* of the honest server's database
(same server id, same log key) that the test then changes (adds a ghost device, forges a
version, drops one, rebuilds its log). `SplitView` serves chosen clients from it, so one
server shows different clients different logs, exactly what the transparency log and its
witnesses must expose.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from doorless.client import Argon2Params, Client, ClientOptions, Event
from doorless.client.kt import KtConfig, KtVerifier, TrustedHead
from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import encode
from doorless.crypto import cipher_suite
from doorless.kt.checkpoint import NoteVerifier, SignatureType, ed25519_public_key
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import MLSMessage
from doorless.mls.group import generate_key_package
from doorless.server.app import create_app
from doorless.server.config import ServerConfig
from doorless.server.context import ServerContext
from doorless.server.storage.base import DeviceRecord, LinkRecord
from doorless.wire import protocol
from doorless.wire.kt import credential_identity
from doorless.witness import Witness, WitnessState
from support.servers import FakeClock
from support.servers import generous_config as make_config

BASE_URL = "http://testserver"
WITNESS = "test-witness"
Scope = dict[str, Any]
E = TypeVar("E")


@dataclass
class Server:
    app: Any
    ctx: ServerContext
    config: ServerConfig


@asynccontextmanager
async def running(config: ServerConfig, clock: FakeClock) -> AsyncIterator[Server]:
    app = create_app(config, clock=clock, background_sweeper=False)
    async with app.router.lifespan_context(app):
        yield Server(app, app.state.ctx, config)


def copy_database(src: ServerConfig, dst: ServerConfig) -> None:
    """A consistent copy of a (running) server's SQLite database."""
    dst.data_dir.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(src.database_path)
    target = sqlite3.connect(dst.database_path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def sql(config: ServerConfig, statement: str, *args: Any) -> list[Any]:
    """Tamper with a (stopped or copied) server's database directly."""
    conn = sqlite3.connect(config.database_path)
    try:
        with conn:
            return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


class SplitView:
    """An ASGI app: requests from a client in ``victims`` (by User-Agent) whose path
    satisfies ``forked`` (by default: all) go to ``fork``, the rest to ``honest``."""

    def __init__(self, honest: Any, fork: Any | None = None) -> None:
        self.honest = honest
        self.fork = fork
        self.victims: set[str] = set()
        self.forked: Callable[[str], bool] = lambda path: True

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        target = self.honest
        if scope["type"] == "http" and self.fork is not None and self.forked(scope["path"]):
            agent = dict(scope.get("headers") or []).get(b"user-agent", b"").decode()
            if agent in self.victims:
                target = self.fork
        await target(scope, receive, send)


@dataclass
class Net:
    """An honest server, one witness, and transports of users (with KT verifiers)."""

    server: Server
    clock: FakeClock
    root: Path
    witness: Witness
    front: SplitView
    quorum: int = 1
    transports: list[Transport] = field(default_factory=list)
    heads: dict[str, TrustedHead] = field(default_factory=dict)

    def http(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.front)

    def transport(self, name: str, device: DeviceIdentity | None = None) -> Transport:
        t = Transport(
            BASE_URL,
            device if device is not None else DeviceIdentity.generate(),
            http_transport=self.http(),
            retries=0,
        )
        t._http.headers["User-Agent"] = name
        t.kt = self.verifier(t, name)
        self.transports.append(t)
        return t

    def verifier(self, t: Transport, name: str, quorum: int | None = None) -> KtVerifier:
        async def persist(head: TrustedHead) -> None:
            self.heads[name] = head

        async def published(_digest: bytes) -> None:
            return None

        return KtVerifier(
            t,
            KtConfig(
                witnesses=(self.witness.vkey,),
                quorum=self.quorum if quorum is None else quorum,
            ),
            on_head=persist,
            on_published=published,
            clock=self.clock,
        )

    async def user(self, username: str) -> Transport:
        t = self.transport(username)
        await t.register(username)
        await t.authenticate()
        await self.witness.step()
        return t

    async def link(self, owner: Transport, name: str) -> Transport:
        assert owner.username is not None
        t = self.transport(name)
        ticket = await t.request_link(owner.username)
        await owner.approve_link(await owner.get_link(ticket.code))
        await t.authenticate()
        await self.witness.step()
        return t

    def witness_transport(self) -> Transport:
        t = Transport(BASE_URL, http_transport=self.http(), retries=0)
        t._http.headers["User-Agent"] = "witness"
        self.transports.append(t)
        return t

    async def close(self) -> None:
        for t in self.transports:
            await t.aclose()


@asynccontextmanager
async def network(root: Path, *, quorum: int = 1) -> AsyncIterator[Net]:
    """An honest server whose log keeps the cosignatures of one witness."""
    clock = FakeClock()
    state = WitnessState(root / "witness")
    # The server must know the witness's key before it starts: derive it from the state file.
    key = NoteVerifier(WITNESS, SignatureType.COSIGNATURE_V1, ed25519_public_key(state.seed()))
    config = make_config(root / "honest", kt_witnesses=(key.vkey(),))
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(running(config, clock))
        front = SplitView(server.app)
        source = Transport(BASE_URL, http_transport=httpx.ASGITransport(app=front), retries=0)
        source._http.headers["User-Agent"] = "witness"
        witness = Witness(source, state, name=WITNESS, clock=clock)
        net = Net(server, clock, root, witness, front, quorum)
        net.transports.append(source)
        try:
            yield net
        finally:
            await net.close()
            state.close()


@asynccontextmanager
async def forked(
    net: Net, tamper: Callable[[ServerConfig], None] | None = None, name: str = "fork"
) -> AsyncIterator[Server]:
    """A second server over a copy of the honest one's database (same server id, same log
    key), changed by ``tamper`` before it starts, and plugged into ``net.front``."""
    config = make_config(net.root / name, kt_witnesses=net.server.config.kt_witnesses)
    copy_database(net.server.config, config)
    if tamper is not None:
        tamper(config)
    async with running(config, net.clock) as server:
        net.front.fork = server.app
        try:
            yield server
        finally:
            net.front.fork = None
            net.front.victims.clear()


# --- what a malicious server (or whoever holds its database) does ------------------------------


async def add_ghost_device(
    server: Server, username: str, *, root: bool = False, now: int = 0
) -> DeviceIdentity:
    """Register a device the server controls under ``username`` in the directory, bypassing
    the routes (no approval by any of the account's devices; not in the account's device
    list). ``root``: make it look like the account's first device, self-approved."""
    ghost = DeviceIdentity.generate()
    storage = server.ctx.storage
    now = now or int(time.time())
    code = "GH" + secrets.token_hex(3).upper()[:6]
    await storage.create_link(
        LinkRecord(code, username, ghost.device_id, ghost.public_key, now, now + 600)
    )
    signature = (
        ghost.sign(protocol.register_content(server.ctx.server_id, username, ghost.public_key))
        if root
        else b"\x00" * 64
    )
    devices = await storage.list_devices(username)
    assert devices
    approver = None if root else devices[0].device_id
    await storage.approve_link(
        code,
        DeviceRecord(ghost.device_id, username, ghost.public_key, approver, signature, now),
        now,
    )
    return ghost


def key_package(username: str, device: DeviceIdentity, now: int | None = None) -> bytes:
    """An MLSMessage(KeyPackage) of ``device`` claiming to be a device of ``username``."""
    suite = cipher_suite(1)
    credential = BasicCredential(credential_identity(username, device.device_id))
    bundle = generate_key_package(
        suite, credential, device.private_key, now=now or int(time.time())
    )
    return encode(MLSMessage(bundle.key_package))


# --- clients (doorless.client.Client) over the same server -------------------------------------

FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSPHRASE = "correct horse battery staple"


class Clients:
    """`Client`s of a `Net`, requiring the witness (quorum 1), which runs in the background."""

    def __init__(self, net: Net, quorum: int) -> None:
        self.net = net
        self.quorum = quorum
        self.clients: list[Client] = []
        self.profiles: dict[str, Path] = {}

    def options(self, **overrides: Any) -> ClientOptions:
        base = ClientOptions(
            push=False,
            http_transport=httpx.ASGITransport(app=self.net.front),
            argon2=FAST_ARGON2,
            key_package_target=4,
            retries=0,
            kt=KtConfig(witnesses=(self.net.witness.vkey,), quorum=self.quorum, witness_wait=10.0),
        )
        return replace(base, **overrides)

    def _named(self, client: Client, name: str) -> Client:
        # SplitView tells clients apart by User-Agent.
        client._transport._http.headers["User-Agent"] = name
        self.profiles[name] = client.profile_dir
        self.clients.append(client)
        return client

    async def user(self, username: str, **overrides: Any) -> Client:
        client = await Client.create_account(
            self.net.root / "profiles" / username,
            PASSPHRASE,
            server_url=BASE_URL,
            username=username,
            options=self.options(**overrides),
        )
        return self._named(client, username)

    async def link(self, owner: Client, name: str) -> Client:
        link = await Client.begin_link(
            self.net.root / "profiles" / name,
            PASSPHRASE,
            server_url=BASE_URL,
            username=owner.username,
            options=self.options(),
        )
        pending = await owner.get_link(link.code)
        new, _ = await asyncio.gather(
            link.complete(timeout=10, poll_interval=0.05),
            owner.approve_link(pending, key_package_timeout=10),
        )
        return self._named(new, name)

    async def reopen(self, client: Client, name: str, **overrides: Any) -> Client:
        await client.close()
        self.clients.remove(client)
        again = await Client.open(
            self.profiles[name], PASSPHRASE, options=self.options(**overrides)
        )
        return self._named(again, name)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


@asynccontextmanager
async def clients(root: Path, *, quorum: int = 1) -> AsyncIterator[tuple[Net, Clients]]:
    async with network(root, quorum=quorum) as net:
        stop = asyncio.Event()
        witness = asyncio.create_task(net.witness.run(0.02, stop=stop))
        group = Clients(net, quorum)
        try:
            yield net, group
        finally:
            await group.close()
            stop.set()
            await witness


def take_events(client: Client) -> list[Event]:
    """The events emitted since the last call (the client's backlog; nobody iterates)."""
    hub = client._hub
    events = list(hub._backlog)
    hub._backlog.clear()
    return events


def of_type(events: list[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]
