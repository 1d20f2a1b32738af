"""Helpers for the safety tests: an in-process server with a controllable clock, clients with
their own clocks, and a reader of the decrypted pages of a client's SQLCipher store.

Reuses the client tests' harness (``tests/client/harness.py``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from client.harness import PASSPHRASE, Network, server_config
from doorless.client import Client
from doorless.client.keys import Argon2Header, Passphrase, StoreKey, read_header
from doorless.client.store import DB_NAME, HEADER_NAME
from doorless.server.app import create_app
from doorless.server.context import ServerContext


class Clock:
    """Wall-clock time that moves only when told to (seconds, like `time.time`)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(start if start is not None else time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SafetyNetwork(Network):
    """`Network` whose clients share one fake clock (`clock`), and whose server has another."""

    def __init__(self, app: Any, root: Path, config: Any, client_clock: Clock) -> None:
        super().__init__(app, root, config)
        self.client_clock = client_clock

    def options(self, **overrides: Any) -> Any:
        overrides.setdefault("clock", self.client_clock)
        return super().options(**overrides)

    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.app.state.ctx
        return ctx


@asynccontextmanager
async def safety_network(
    root: Path, *, server_clock: Callable[[], float] | None = None, **config: Any
) -> AsyncIterator[SafetyNetwork]:
    cfg = server_config(root / "server", **config)
    app = create_app(cfg, clock=server_clock or time.time, background_sweeper=False)
    async with app.router.lifespan_context(app):
        net = SafetyNetwork(app, root, cfg, Clock())
        try:
            yield net
        finally:
            await net.close()


def canary() -> str:
    return "CANARY-" + secrets.token_hex(12)


# --- SQLCipher pages ----------------------------------------------------------------------------
# SQLCipher 4 defaults: 4096-byte pages ending in an 80-byte reserve (16-byte IV, 64-byte HMAC);
# page 1 starts with the 16-byte file salt (as in tests/client/test_store.py).

PAGE_SIZE = 4096
RESERVE = 80
WAL_HEADER = 32
WAL_FRAME_HEADER = 24


def store_key(profile: Path) -> StoreKey:
    header = read_header(profile / HEADER_NAME)
    assert isinstance(header, Argon2Header)
    return Passphrase(PASSPHRASE).unlock(header)


def _decrypt_page(page: bytes, key: StoreKey, first: bool) -> bytes:
    iv = page[PAGE_SIZE - RESERVE : PAGE_SIZE - RESERVE + 16]
    decryptor = Cipher(algorithms.AES(key.value), modes.CBC(iv)).decryptor()
    return decryptor.update(page[16 if first else 0 : PAGE_SIZE - RESERVE]) + decryptor.finalize()


def decrypted_store(profile: Path) -> bytes:
    """Every page image of the profile's database file and of its WAL, decrypted: what the
    store holds, deleted rows and free pages included."""
    key = store_key(profile)
    out = []
    db = (profile / DB_NAME).read_bytes()
    for offset in range(0, len(db) - PAGE_SIZE + 1, PAGE_SIZE):
        out.append(_decrypt_page(db[offset : offset + PAGE_SIZE], key, offset == 0))
    wal_path = profile / (DB_NAME + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    frame = WAL_FRAME_HEADER + PAGE_SIZE
    for offset in range(WAL_HEADER, len(wal) - frame + 1, frame):
        pgno = int.from_bytes(wal[offset : offset + 4], "big")
        out.append(_decrypt_page(wal[offset + WAL_FRAME_HEADER : offset + frame], key, pgno == 1))
    return b"".join(out)


def raw_files(profile: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(profile.iterdir()) if p.is_file())


async def gid_of(client: Client, conversation_id: str) -> bytes:
    return bytes.fromhex((await client.conversation(conversation_id)).id)
