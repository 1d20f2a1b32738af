"""The floor: the least a Python server must do to deliver with Doorless's semantics.

A baseline for `load.py`, not a product: it speaks the same HTTP and WebSocket shapes the load
generator uses (``POST /v1/messages``, ``/v1/ws`` with JSON frames, ``GET /v1/info``) and does
exactly what delivery needs and nothing more (no MLS parsing, no franking, no key transparency,
no rate limits, no logging):

* bearer-token authentication: the token's SHA-256 looked up in the database on each request
  (and once per WebSocket);
* an idempotency row per ``(sender device, message id)`` over the SHA-256 of the body;
* one durable transaction per send (SQLite ``synchronous=FULL`` in WAL mode, or a PostgreSQL
  commit) with one queue row per recipient, and the answer only after it committed;
* a push of each queued row to each recipient's WebSocket;
* acks deleting rows (one transaction per ack frame, many seqs at once);
* replay of the queue on connect (``?after=`` honoured).

Accounts are not registered through the real protocol: ``POST /floor/devices {"count": n}``
creates ``n`` devices and returns their ids and tokens (setup, not measured).

    python bench/floor_server.py --port 8700 --data-dir /tmp/floor
    python bench/floor_server.py --port 8700 --database postgresql://postgres@127.0.0.1/test \\
        --schema floor_x
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# --- storage: the same five operations on SQLite and PostgreSQL ------------------------------


class SqliteStore:
    """One connection on one thread (a single writer, as in Doorless)."""

    def __init__(self, path: Path) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS tokens (token_hash BLOB PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices, expires_at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS sent (sender TEXT NOT NULL, message_id TEXT NOT NULL,
                digest BLOB NOT NULL, PRIMARY KEY (sender, message_id));
            CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                device_id TEXT NOT NULL REFERENCES devices, data BLOB NOT NULL,
                received_at INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS queue_device ON queue (device_id, seq);
            """
        )

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def add_devices(self, rows: list[tuple[str, bytes, int]]) -> None:
        def op() -> None:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT INTO devices VALUES (?)", [(d,) for _, d, _ in rows])
                self.conn.executemany("INSERT INTO tokens VALUES (?, ?, ?)", rows)

        await self._call(op)

    async def device_of(self, token: bytes, now: int) -> str | None:
        def op() -> str | None:
            row = self.conn.execute(
                "SELECT device_id FROM tokens WHERE token_hash = ? AND expires_at > ?",
                (token, now),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._call(op)  # type: ignore[no-any-return]

    async def send(
        self, sender: str, message_id: str, digest: bytes, data: bytes, to: list[str], now: int
    ) -> list[tuple[str, int]] | bool:
        """The seqs queued, or whether a repeat has the same digest (True: duplicate)."""

        def op() -> list[tuple[str, int]] | bool:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                old = c.execute(
                    "SELECT digest FROM sent WHERE sender = ? AND message_id = ?",
                    (sender, message_id),
                ).fetchone()
                if old is not None:
                    c.execute("ROLLBACK")
                    return bytes(old[0]) == digest
                c.execute("INSERT INTO sent VALUES (?, ?, ?)", (sender, message_id, digest))
                seqs = [
                    (d, c.execute(
                        "INSERT INTO queue (device_id, data, received_at) VALUES (?, ?, ?) "
                        "RETURNING seq", (d, data, now),
                    ).fetchone()[0])
                    for d in to
                ]  # fmt: skip
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return seqs

        return await self._call(op)  # type: ignore[no-any-return]

    async def ack(self, device: str, seqs: list[int]) -> int:
        def op() -> int:
            marks = ",".join("?" * len(seqs))
            with self.conn:
                self.conn.execute("BEGIN")
                cur = self.conn.execute(
                    f"DELETE FROM queue WHERE device_id = ? AND seq IN ({marks})", (device, *seqs)
                )
            return int(cur.rowcount)

        return await self._call(op)  # type: ignore[no-any-return]

    async def queued(self, device: str, after: int) -> list[tuple[int, bytes, int]]:
        def op() -> list[tuple[int, bytes, int]]:
            return self.conn.execute(
                "SELECT seq, data, received_at FROM queue WHERE device_id = ? AND seq > ? "
                "ORDER BY seq",
                (device, after),
            ).fetchall()

        return await self._call(op)  # type: ignore[no-any-return]


class PostgresStore:
    """An asyncpg pool; a send is BEGIN, the idempotency row, one multi-row insert, COMMIT."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        admin = await asyncpg.connect(self.dsn)
        try:
            await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        finally:
            await admin.close()
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=4, max_size=20, server_settings={"search_path": self.schema}
        )
        await self.pool.execute(
            """
            CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS tokens (token_hash BYTEA PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices, expires_at BIGINT NOT NULL);
            CREATE TABLE IF NOT EXISTS sent (sender TEXT NOT NULL, message_id TEXT NOT NULL,
                digest BYTEA NOT NULL, PRIMARY KEY (sender, message_id));
            CREATE TABLE IF NOT EXISTS queue (seq BIGSERIAL PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices, data BYTEA NOT NULL,
                received_at BIGINT NOT NULL);
            CREATE INDEX IF NOT EXISTS queue_device ON queue (device_id, seq);
            """
        )

    async def add_devices(self, rows: list[tuple[str, bytes, int]]) -> None:
        async with self.pool.acquire() as c, c.transaction():
            await c.executemany("INSERT INTO devices VALUES ($1)", [(d,) for _, d, _ in rows])
            await c.executemany("INSERT INTO tokens VALUES ($1, $2, $3)", rows)

    async def device_of(self, token: bytes, now: int) -> str | None:
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT device_id FROM tokens WHERE token_hash = $1 AND expires_at > $2", token, now
        )

    async def send(
        self, sender: str, message_id: str, digest: bytes, data: bytes, to: list[str], now: int
    ) -> list[tuple[str, int]] | bool:
        async with self.pool.acquire() as c, c.transaction():
            fresh = await c.fetchval(
                "INSERT INTO sent VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                sender,
                message_id,
                digest,
            )
            if not fresh:
                old = await c.fetchval(
                    "SELECT digest FROM sent WHERE sender = $1 AND message_id = $2",
                    sender,
                    message_id,
                )
                return bytes(old) == digest
            rows = await c.fetch(
                "INSERT INTO queue (device_id, data, received_at) "
                "SELECT unnest($1::text[]), $2, $3 RETURNING device_id, seq",
                to,
                data,
                now,
            )
        return [(r[0], r[1]) for r in rows]

    async def ack(self, device: str, seqs: list[int]) -> int:
        done = await self.pool.execute(
            "DELETE FROM queue WHERE device_id = $1 AND seq = ANY($2::bigint[])", device, seqs
        )
        return int(done.split()[-1])

    async def queued(self, device: str, after: int) -> list[tuple[int, bytes, int]]:
        rows = await self.pool.fetch(
            "SELECT seq, data, received_at FROM queue WHERE device_id = $1 AND seq > $2 "
            "ORDER BY seq",
            device,
            after,
        )
        return [(r[0], r[1], r[2]) for r in rows]


# --- the ASGI application ----------------------------------------------------------------------


class Floor:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.sockets: dict[str, set[Send]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            if isinstance(self.store, PostgresStore):
                await self.store.open()
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})

    async def _device(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return await self.store.device_of(token_hash(value[7:].decode()), int(time.time()))  # type: ignore[no-any-return]
        return None

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/info":
            return await _answer(send, 200, {"floor": True})
        if method == "POST" and path == "/floor/devices":
            return await _answer(send, 201, await self.create(json.loads(body)["count"]))
        if method == "POST" and path == "/v1/messages":
            device = await self._device(scope)
            if device is None:
                return await _answer(send, 401, {"error": "unauthorized"})
            return await self.deliver(send, device, body)
        await _answer(send, 404, {"error": "not_found"})

    async def create(self, count: int) -> list[dict[str, str]]:
        made = [(secrets.token_hex(16), secrets.token_urlsafe(32)) for _ in range(count)]
        expires = int(time.time()) + 86400
        await self.store.add_devices([(token_hash(t), d, expires) for d, t in made])
        return [{"id": d, "token": t} for d, t in made]

    async def deliver(self, send: Send, device: str, body: bytes) -> None:
        try:
            request = json.loads(body)
            message_id, to = str(request["message_id"]), list(request["recipients"])
            data = base64.b64decode(request["data"], validate=True)
        except (ValueError, KeyError, TypeError):
            return await _answer(send, 422, {"error": "invalid_request"})
        digest = hashlib.sha256(body).digest()
        now = int(time.time())
        result = await self.store.send(device, message_id, digest, data, to, now)
        if result is True or result is False:
            status = 200 if result else 409
            return await _answer(send, status, {"message_id": message_id, "duplicate": result})
        await _answer(send, 201, {"message_id": message_id, "group_epoch": None})
        encoded = request["data"]
        for recipient, seq in result:
            frame = json.dumps(
                {"type": "message", "seq": seq, "data": encoded, "received_at": now, "frank": None}
            )
            for ws in tuple(self.sockets.get(recipient, ())):
                await ws({"type": "websocket.send", "text": frame})

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        device = await self._device(scope)
        if device is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        query = dict(p.partition("=")[::2] for p in scope["query_string"].decode().split("&"))
        after = int(query.get("after") or 0)
        await send({"type": "websocket.accept"})
        self.sockets.setdefault(device, set()).add(send)
        try:
            for seq, data, received_at in await self.store.queued(device, after):
                frame = {
                    "type": "message",
                    "seq": seq,
                    "data": base64.b64encode(data).decode(),
                    "received_at": received_at,
                    "frank": None,
                }
                await send({"type": "websocket.send", "text": json.dumps(frame)})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = json.loads(message.get("text") or "{}")
                seqs = [int(s) for s in frame.get("seqs", ())]
                acknowledged = await self.store.ack(device, seqs) if seqs else 0
                reply = json.dumps({"type": "acked", "acknowledged": acknowledged})
                await send({"type": "websocket.send", "text": reply})
        finally:
            self.sockets[device].discard(send)


async def _answer(send: Send, status: int, value: Any) -> None:
    body = json.dumps(value).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("."))
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite in --data-dir)")
    parser.add_argument("--schema", default="floor")
    args = parser.parse_args()
    if args.database:
        store: Any = PostgresStore(args.database, args.schema)  # opened at startup
    else:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(args.data_dir / "floor.db")
    uvicorn.run(
        Floor(store),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,  # ciphertext does not compress
        ws_max_size=64 * 1024,
    )


if __name__ == "__main__":
    main()
