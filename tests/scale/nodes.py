"""Server processes (``doorless server --database ... --redis ...``) and a minimal load client.

The client speaks the HTTP/WebSocket protocol directly (httpx + websockets) so that a test
decides which node every request and every socket goes to, and what happens on failure.
Registration and login go through the real `Transport`. Each simulated device announces its
own address in ``X-Forwarded-For`` (uvicorn trusts it from 127.0.0.1), as clients behind a
load balancer would, so the per-address limits of anonymous calls apply per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from doorless.client.errors import Conflict, ServerUnreachable
from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import decode, encode
from doorless.franking import FrankingAAD
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage
from doorless.wire import protocol
from support.servers import ServerProcess


def mls_message(
    group_id: bytes,
    epoch: int,
    body: bytes,
    content_type: ContentType = ContentType.application,
) -> bytes:
    """A well-formed MLSMessage(PrivateMessage) whose opaque ciphertext is ``body``; an
    application message carries a (random) franking tag, as the server requires."""
    aad = b""
    if content_type == ContentType.application:
        aad = encode(FrankingAAD(secrets.token_bytes(32)))
    return encode(
        MLSMessage(
            PrivateMessage(
                group_id=group_id,
                epoch=epoch,
                content_type=content_type,
                authenticated_data=aad,
                encrypted_sender_data=b"\x01" * 16,
                ciphertext=body,
            )
        )
    )


def body_of(data: bytes) -> bytes:
    """The opaque ciphertext field of an `mls_message`."""
    message = decode(MLSMessage, data)
    assert isinstance(message.body, PrivateMessage)
    return message.body.ciphertext


# --- server processes ----------------------------------------------------------------------


class Node(ServerProcess):
    """One ``doorless server`` process of a deployment; ``start``/``kill``/``stop`` can be
    repeated."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        database: str,
        redis: str | None,
        extra: Sequence[str] = (),
        log_level: str = "",
    ) -> None:
        args = (
            *(("--database", database) if database else ()),  # "": SQLite in the data directory
            *(("--redis", redis) if redis is not None else ()),
            *extra,  # more `doorless server` options
        )
        super().__init__(
            data_dir=data_dir,
            log_path=data_dir.parent / f"{name}.log",
            args=args,
            log_level=log_level or os.environ.get("DOORLESS_TEST_LOG_LEVEL", "warning"),
        )
        self.name = name
        self.database = database
        self.redis = redis

    @property
    def log(self) -> Path:
        return self.log_path


def make_nodes(
    root: Path,
    count: int,
    database: str,
    redis: str | None,
    prefix: str = "node",
    extra: Sequence[str] = (),
    log_level: str = "",
) -> list[Node]:
    nodes = []
    for i in range(count):
        data_dir = root / f"{prefix}{i}"
        data_dir.mkdir(parents=True, exist_ok=True)
        nodes.append(Node(f"{prefix}{i}", data_dir, database, redis, extra, log_level))
    return nodes


def server_errors(nodes: Sequence[Node]) -> list[str]:
    """Every 5xx answered and every error logged by ``nodes`` (run at log level info, so each
    request has its line with its status)."""
    found = []
    for node in nodes:
        for line in node.log_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                found.append(f"{node.name}: {line}")  # not ours: a traceback, a crash
                continue
            if entry.get("level") in ("error", "critical") or int(entry.get("status", 0)) >= 500:
                found.append(f"{node.name}: {line}")
    return found


def start_all(nodes: Sequence[Node]) -> None:
    """Start the first node alone (it migrates the database), then the others together."""
    nodes[0].start()
    for node in nodes[1:]:
        node.spawn()
    for node in nodes[1:]:
        node.wait_ready()


# --- simulated devices ---------------------------------------------------------------------


@dataclass
class Device:
    username: str
    identity: DeviceIdentity
    token: str
    address: str  # what it puts in X-Forwarded-For

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.address}


async def register(url: str, username: str) -> Device:
    """A new account with one device, logged in (through the real client transport)."""
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    identity = DeviceIdentity.generate()
    t = Transport(url, identity, retries=3)
    t._http.headers["X-Forwarded-For"] = address
    try:
        for attempt in range(3):
            try:
                await t.register(username)
                break
            except ServerUnreachable:
                # Written on a connection the server was closing: on a starved machine its
                # keep-alive timer runs out while this process is slow to reuse the connection,
                # and the request never reaches the app (the server logs nothing). Registering
                # again with the same key is safe: had it landed, the name is ours already.
                if attempt == 2:
                    raise
            except Conflict:
                if attempt == 0:
                    raise
                break  # the earlier attempt landed: logging in below proves the key is ours
        await t.authenticate()
        assert t._token is not None
        return Device(username, identity, t._token, address)
    finally:
        await t.aclose()


async def register_many(url: str, prefix: str, count: int, concurrency: int = 16) -> list[Device]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Device:
        async with gate:
            return await register(url, f"{prefix}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class SendFailed(Exception):
    def __init__(self, status: int | None, body: Any) -> None:
        super().__init__(f"send failed: {status} {body}")
        self.status = status
        self.body = body


async def send(
    http: httpx.AsyncClient,
    url: str,
    device: Device,
    data: bytes,
    recipients: Sequence[str],
    message_id: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """One POST /v1/messages; raises `SendFailed` (status None: no answer)."""
    body = {
        "message_id": message_id or secrets.token_urlsafe(12),
        "data": protocol.b64encode(data),
        "recipients": list(recipients),
    }
    try:
        r = await http.post(
            f"{url}/v1/messages", json=body, headers=device.headers(), timeout=timeout
        )
    except httpx.TransportError as exc:
        raise SendFailed(None, type(exc).__name__) from None
    if r.status_code not in (200, 201):
        try:
            detail: Any = r.json()
        except ValueError:
            detail = r.text
        raise SendFailed(r.status_code, detail)
    result: dict[str, Any] = r.json()
    return result


@dataclass
class Inbox:
    """What one device received over its push sockets: every frame, in order."""

    device: Device
    frames: list[tuple[int, bytes, float]] = field(default_factory=list)  # seq, data, when
    last_seq: int = 0
    redelivered: int = 0  # frames dropped by the dedupe (seq already seen), acked again
    unconfirmed: list[list[int]] = field(default_factory=list)  # ack frames not answered yet
    connects: int = 0
    nodes_used: set[str] = field(default_factory=set)


async def open_socket(url: str, device: Device, after: int) -> ClientConnection:
    ws_url = url.replace("http", "ws", 1) + f"/v1/ws?after={after}"
    return await connect(
        ws_url, additional_headers=device.headers(), open_timeout=5, max_size=4 * 1024 * 1024
    )


async def receive_forever(
    inbox: Inbox,
    pick_url: Callable[[], str],
    on_message: Callable[[Inbox, int, bytes], None] | None = None,
    ack: bool = True,
) -> None:
    """Keep a push socket open to some node (``pick_url()`` on every (re)connect), record
    every message and ack it. Runs until cancelled; survives nodes dying.

    The socket resumes after the last seq seen, so the server never re-sends a message whose
    ack died with a node: acks the server has not confirmed (``"acked"`` frames answer them
    in order) are sent again on the next socket.
    """
    while True:
        url = pick_url()
        try:
            socket_ = await open_socket(url, inbox.device, inbox.last_seq)
        except (OSError, WebSocketException, TimeoutError):
            await asyncio.sleep(0.05 + random.random() * 0.1)
            continue
        inbox.connects += 1
        inbox.nodes_used.add(url)
        try:
            if ack and inbox.unconfirmed:
                again = sorted({s for batch in inbox.unconfirmed for s in batch})
                inbox.unconfirmed.clear()
                for i in range(0, len(again), 1000):
                    inbox.unconfirmed.append(again[i : i + 1000])
                    await socket_.send(json.dumps({"type": "ack", "seqs": again[i : i + 1000]}))
            async for raw in socket_:
                frame = json.loads(raw)
                if frame.get("type") == "acked" and inbox.unconfirmed:
                    inbox.unconfirmed.pop(0)
                if frame.get("type") != "message":
                    continue
                seq = int(frame["seq"])
                if seq <= inbox.last_seq:
                    inbox.redelivered += 1  # seen before: drop it (the dedupe)
                    continue
                data = protocol.b64decode(frame["data"])
                inbox.frames.append((seq, data, time.monotonic()))
                inbox.last_seq = seq
                if on_message is not None:
                    on_message(inbox, seq, data)
                if ack:
                    inbox.unconfirmed.append([seq])
                    await socket_.send(json.dumps({"type": "ack", "seqs": [seq]}))
        except (OSError, WebSocketException, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await socket_.close()
        await asyncio.sleep(0.02 + random.random() * 0.05)


async def fetch_all(http: httpx.AsyncClient, url: str, device: Device) -> list[tuple[int, bytes]]:
    """Everything still queued for ``device`` (HTTP fetch, following pages)."""
    out: list[tuple[int, bytes]] = []
    after = 0
    while True:
        r = await http.get(
            f"{url}/v1/messages",
            params={"after": after, "limit": 500},
            headers=device.headers(),
            timeout=10,
        )
        r.raise_for_status()
        page = r.json()
        for m in page["messages"]:
            out.append((int(m["seq"]), protocol.b64decode(m["data"])))
            after = int(m["seq"])
        if not page["more"]:
            return out
