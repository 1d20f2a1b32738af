"""Helpers for the server tests: MLS message bytes, a fake clock, an in-process server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import encode
from doorless.franking import FrankingAAD
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage
from doorless.server.app import create_app
from doorless.server.config import ServerConfig
from doorless.server.context import ServerContext
from doorless.server.storage.base import DeviceRecord
from doorless.server.storage.sqlite import SQLiteStorage
from support.servers import FakeClock
from support.servers import generous_config as make_config  # noqa: F401 - for the server tests

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mls"
BASE_URL = "http://testserver"
DUMMY_TAG = b"\x00" * 32  # a franking tag the server accepts (it cannot check it)


@cache
def device_record(n: int) -> DeviceRecord:
    """A registered device numbered ``n`` (its own account ``user{n}``), for storage tests."""
    return DeviceRecord(
        device_id=f"{n:032x}",
        username=f"user{n}",
        device_key=bytes([n]) * 32,
        approved_by=None,
        approval_signature=b"sig",
        created_at=1,
    )


@asynccontextmanager
async def sqlite_store(
    path: Path, devices: int = 2
) -> AsyncIterator[tuple[SQLiteStorage, list[str]]]:
    """An open SQLite store with ``devices`` registered (`device_record` 1, 2, ...) and their
    ids; closed on the way out."""
    store = SQLiteStorage(path)
    await store.open()
    try:
        for n in range(1, devices + 1):
            await store.create_account(device_record(n), None, 1)
        yield store, [device_record(n).device_id for n in range(1, devices + 1)]
    finally:
        await store.close()


def _message_vectors() -> list[dict[str, str]]:
    data: list[dict[str, str]] = json.loads((VECTORS / "messages.json").read_text())
    return data


def key_package(i: int = 0) -> bytes:
    """A distinct, well-formed MLSMessage(mls_key_package) per ``i`` (official vectors)."""
    return bytes.fromhex(_message_vectors()[i]["mls_key_package"])


def welcome(i: int = 0) -> bytes:
    return bytes.fromhex(_message_vectors()[i]["mls_welcome"])


def group_info(i: int = 0) -> bytes:
    return bytes.fromhex(_message_vectors()[i]["mls_group_info"])


def public_commit(i: int = 0) -> bytes:
    """A PublicMessage commit from the vectors (its group id and epoch are the vector's)."""
    return bytes.fromhex(_message_vectors()[i]["public_message_commit"])


def private_message(
    group_id: bytes,
    epoch: int,
    content_type: ContentType = ContentType.application,
    ciphertext: bytes = b"\x00" * 32,
) -> bytes:
    """An MLSMessage(PrivateMessage) with this cleartext header and opaque ciphertext.

    An application message carries a (dummy) franking tag: the server refuses one without.
    """
    franked = content_type == ContentType.application
    return encode(
        MLSMessage(
            PrivateMessage(
                group_id=group_id,
                epoch=epoch,
                content_type=content_type,
                authenticated_data=encode(FrankingAAD(DUMMY_TAG)) if franked else b"",
                encrypted_sender_data=b"\x01" * 16,
                ciphertext=ciphertext,
            )
        )
    )


def commit(group_id: bytes, epoch: int, ciphertext: bytes = b"\x00" * 32) -> bytes:
    return private_message(group_id, epoch, ContentType.commit, ciphertext)


@dataclass
class Harness:
    """An in-process server (httpx ASGI transport) and clients bound to it."""

    app: Any
    ctx: ServerContext
    clock: FakeClock
    config: ServerConfig
    _clients: list[Transport] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        """A raw HTTP client (for malformed requests the transport would never send)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)

    def client(self, device: DeviceIdentity | None = None) -> Transport:
        t = Transport(
            BASE_URL,
            device if device is not None else DeviceIdentity.generate(),
            http_transport=httpx.ASGITransport(app=self.app),
            retries=0,
        )
        self._clients.append(t)
        return t

    async def user(self, username: str) -> Transport:
        """A registered, logged-in first device of ``username``."""
        t = self.client()
        await t.register(username)
        await t.authenticate()
        return t

    async def linked(self, owner: Transport) -> Transport:
        """A second device of ``owner``'s account, approved by ``owner``."""
        assert owner.username is not None
        t = self.client()
        ticket = await t.request_link(owner.username)
        await owner.approve_link(await owner.get_link(ticket.code))
        await t.authenticate()
        return t

    async def close(self) -> None:
        for t in self._clients:
            await t.aclose()

    def db_dump(self) -> list[str]:
        return db_dump(self.config.database_path)

    def files(self) -> list[str]:
        root = self.config.data_dir
        return sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".shm"
        )


def db_dump(path: Path) -> list[str]:
    """Every row of the database as SQL (a separate connection sees committed state)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@asynccontextmanager
async def running(config: ServerConfig, clock: FakeClock) -> AsyncIterator[Harness]:
    app = create_app(config, clock=clock, background_sweeper=False)
    async with app.router.lifespan_context(app):
        h = Harness(app, app.state.ctx, clock, config)
        try:
            yield h
        finally:
            await h.close()


def scan(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, needle) where a needle occurs in a file under ``root``: the canary scan
    for I1 (database, WAL, blobs, anything the server wrote)."""
    hits: list[tuple[str, bytes]] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits.extend((str(path.relative_to(root)), n) for n in needles if n in data)
    return hits
