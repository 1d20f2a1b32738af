"""Concurrency and faults through real ``doorless server`` processes: hundreds of registrations
at once (each one a key-transparency log append) on one SQLite node, one PostgreSQL node and
two PostgreSQL + Redis nodes, with commits racing on the side; a PostgreSQL outage (a TCP
proxy on loopback that is cut, the real PostgreSQL keeps running) answered with 503 +
Retry-After and recovered from; and a bounded soak of mixed traffic. Every node runs at log
level info, so each request's status is in its log: the criterion is zero 5xx and zero error
lines (`server_errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from doorless.client.errors import ServerError
from doorless.mls.framing import ContentType
from doorless.server.kt_service import KtService
from doorless.server.storage.postgres import PostgresStorage

from .conftest import PG_DSN, PgSchema
from .nodes import (
    Device,
    Node,
    SendFailed,
    make_nodes,
    mls_message,
    register,
    send,
    server_errors,
    start_all,
)

pytestmark = pytest.mark.asyncio

REGISTRATIONS = 300
AT_ONCE = 100
UNLIMITED = ("--rate-limit", "0", "--anon-rate-limit", "0")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) can close one
    # under a request (a ReadError that is no fault of the server).
    limits = httpx.Limits(keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        yield client


def _nodes(root: Path, count: int, database: str, redis: str | None) -> Iterator[list[Node]]:
    nodes = make_nodes(root, count, database, redis, extra=UNLIMITED, log_level="info")
    try:
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        for line in server_errors(nodes)[:20]:  # shown if the test fails
            print(line[:500])
        if os.environ.get("DOORLESS_KEEP_NODE_LOGS"):
            for node in nodes:
                Path(os.environ["DOORLESS_KEEP_NODE_LOGS"], node.name + ".log").write_text(
                    node.log_text()
                )


@pytest.fixture
def sqlite_node(tmp_path: Path) -> Iterator[list[Node]]:
    yield from _nodes(tmp_path, 1, "", None)


@pytest.fixture
def pg_node(pg_schema_sync: PgSchema, tmp_path: Path) -> Iterator[list[Node]]:
    yield from _nodes(tmp_path, 1, pg_schema_sync.url, None)


@pytest.fixture
def pg_pair(pg_schema_sync: PgSchema, redis_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    yield from _nodes(tmp_path, 2, pg_schema_sync.url + "&pool_size=10", redis_url)


async def register_at_once(urls: list[str], prefix: str, count: int) -> list[Device]:
    """``count`` registrations, ``AT_ONCE`` in flight, spread over ``urls``."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(i: int) -> Device:
        async with gate:
            return await register(urls[i % len(urls)], f"{prefix}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _check_log(schema: PgSchema, expected_versions: int) -> None:
    """The stored log replays against its prefix trees and logged every version."""
    storage = PostgresStorage(schema.dsn, schema=schema.schema)
    await storage.open()
    try:
        assert await storage.check() == []
        kt = KtService(storage, time.time)
        await kt.open_read_only(await storage.server_id())
        assert await storage.kt_pending() == []
        logged = sum(len(e.added) for e in await storage.kt_entries(0, 1_000_000))
        assert logged == expected_versions
    finally:
        await storage.close()


async def test_concurrent_registrations_on_one_sqlite_node(sqlite_node: list[Node]) -> None:
    started = time.monotonic()
    devices = await register_at_once([sqlite_node[0].url], "sq", REGISTRATIONS)
    elapsed = time.monotonic() - started
    print(f"\n{REGISTRATIONS} registrations on one SQLite node: {elapsed:.1f} s")
    assert len({d.device_id for d in devices}) == REGISTRATIONS
    assert server_errors(sqlite_node) == []


async def test_concurrent_registrations_on_one_postgres_node(
    pg_node: list[Node], pg_schema_sync: PgSchema
) -> None:
    started = time.monotonic()
    devices = await register_at_once([pg_node[0].url], "pg", REGISTRATIONS)
    elapsed = time.monotonic() - started
    print(f"\n{REGISTRATIONS} registrations on one PostgreSQL node: {elapsed:.1f} s")
    assert len(devices) == REGISTRATIONS
    assert server_errors(pg_node) == []
    await _check_log(pg_schema_sync, REGISTRATIONS)


async def test_concurrent_registrations_and_commits_on_two_nodes(
    pg_pair: list[Node], pg_schema_sync: PgSchema, http: httpx.AsyncClient
) -> None:
    """Two nodes over one PostgreSQL + Redis: registrations on both at once (their KT appends
    serialized by the advisory lock), while members race commits from both nodes."""
    urls = [n.url for n in pg_pair]
    members = await register_at_once(urls, "member", 6)
    everyone = [m.device_id for m in members]
    group = b"concurrency-group"
    epochs_won: list[int] = []

    async def commits() -> None:
        for epoch in range(10):

            async def attempt(k: int, member: Device, epoch: int = epoch) -> bool:
                others = [d for d in everyone if d != member.device_id]
                message = mls_message(group, epoch, f"e{epoch} by {k}".encode(), ContentType.commit)
                message_id = secrets.token_urlsafe(12)
                for _ in range(3):  # no answer (a dropped connection): the same id again
                    try:
                        await send(
                            http, urls[k % 2], member, message, others, message_id, timeout=60
                        )
                    except SendFailed as exc:
                        if exc.status is None:
                            continue
                        assert exc.status == 409, exc
                        assert exc.body["error"] == "epoch_conflict", exc
                        return False
                    return True
                raise AssertionError(f"epoch {epoch}: member {k} got no answer 3 times")

            won = await asyncio.gather(*(attempt(k, m) for k, m in enumerate(members)))
            assert sum(won) == 1, f"epoch {epoch}: {won}"
            epochs_won.append(epoch)

    started = time.monotonic()
    registered, _ = await asyncio.gather(register_at_once(urls, "two", REGISTRATIONS), commits())
    elapsed = time.monotonic() - started
    print(f"\n{REGISTRATIONS} registrations + 10 commit rounds on two nodes: {elapsed:.1f} s")
    assert len(registered) == REGISTRATIONS and epochs_won == list(range(10))
    assert server_errors(pg_pair) == []
    await _check_log(pg_schema_sync, REGISTRATIONS + len(members))


# --- a PostgreSQL outage -----------------------------------------------------------------------


class Proxy:
    """A TCP proxy on loopback in front of PostgreSQL: ``cut`` closes the listener and every
    connection through it (the node sees PostgreSQL gone: reset connections, refused new
    ones); ``restore`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()


async def test_a_postgres_outage_answers_503_and_the_node_recovers(
    pg_schema_sync: PgSchema, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    dsn = httpx.URL(PG_DSN)
    proxy = Proxy(dsn.host, dsn.port or 5432)
    await proxy.start()
    through_proxy = str(dsn.copy_with(port=proxy.port))
    database = f"{through_proxy}?schema={pg_schema_sync.schema}&pool_size=4"
    [node] = make_nodes(tmp_path, 1, database, None, extra=UNLIMITED, log_level="info")
    try:
        await asyncio.to_thread(node.start)
        alice = await register(node.url, "alice")
        headers = alice.headers()
        assert (await http.get(f"{node.url}/v1/messages", headers=headers)).status_code == 200

        await proxy.cut()  # PostgreSQL "goes away"
        for _ in range(3):
            r = await http.get(f"{node.url}/v1/messages", headers=headers)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "2"
            assert r.json()["error"] == "unavailable"
        with pytest.raises(ServerError) as refused:
            await register(node.url, "bob")
        assert refused.value.status == 503
        ws_url = node.url.replace("http", "ws", 1) + "/v1/ws"
        with pytest.raises(InvalidStatus) as socket_refused:  # the push socket too
            await connect(ws_url, additional_headers=headers, proxy=None)
        assert socket_refused.value.response.status_code == 503
        assert socket_refused.value.response.headers["Retry-After"] == "2"
        assert node.alive

        await proxy.restore()  # back: the pool reconnects by itself
        deadline = time.monotonic() + 30
        while (await http.get(f"{node.url}/v1/messages", headers=headers)).status_code != 200:
            assert time.monotonic() < deadline, "the node did not recover"
            await asyncio.sleep(0.2)
        await register(node.url, "bob")  # bob's failed attempt left nothing behind
    finally:
        node.stop()
        await proxy.close()
    log = node.log_text()
    statuses = [line for line in log.splitlines() if '"status":5' in line]
    assert statuses and all('"status":503' in line for line in statuses), statuses
    assert '"unhandled exception"' not in log, log
    assert '"level":"error"' not in log, log


# --- soak --------------------------------------------------------------------------------------


SOAK_SECONDS = float(os.environ.get("DOORLESS_SOAK_SECONDS", "20"))


async def test_soak_mixed_traffic_on_postgres_has_no_5xx(
    pg_pair: list[Node], pg_schema_sync: PgSchema, http: httpx.AsyncClient
) -> None:
    """Registrations, sends, fetches, acks and racing commits on two nodes for a bounded time
    (``DOORLESS_SOAK_SECONDS``, default 20; raise it to hunt rare failures): zero 5xx."""
    urls = [n.url for n in pg_pair]
    members = await register_at_once(urls, "soak", 8)
    everyone = [m.device_id for m in members]
    deadline = time.monotonic() + SOAK_SECONDS
    counts = {"register": 0, "send": 0, "fetch": 0, "commit": 0}

    async def registrar(k: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            await register(urls[i % 2], f"soaker{k}x{i}")
            counts["register"] += 1
            i += 1

    async def chatter(k: int, member: Device) -> None:
        group = f"soak-group-{k}".encode()
        url = urls[k % 2]
        while time.monotonic() < deadline:
            others = random.sample([d for d in everyone if d != member.device_id], 3)
            await send(http, url, member, mls_message(group, 0, b"hi"), others, timeout=60)
            counts["send"] += 1
            r = await http.get(f"{url}/v1/messages", headers=member.headers())
            assert r.status_code == 200, r.text
            seqs = [m["seq"] for m in r.json()["messages"]]
            if seqs:
                a = await http.post(
                    f"{url}/v1/messages/ack", json={"seqs": seqs}, headers=member.headers()
                )
                assert a.status_code < 300, a.text
            counts["fetch"] += 1

    async def committer() -> None:
        group, epoch = b"soak-commits", 0
        while time.monotonic() < deadline:

            async def attempt(k: int, member: Device, epoch: int = epoch) -> bool:
                others = [d for d in everyone if d != member.device_id]
                message = mls_message(group, epoch, b"commit", ContentType.commit)
                try:
                    await send(http, urls[k % 2], member, message, others, timeout=60)
                except SendFailed as exc:
                    assert exc.status == 409, exc
                    return False
                return True

            won = await asyncio.gather(*(attempt(k, m) for k, m in enumerate(members[:4])))
            assert sum(won) == 1
            epoch += 1
            counts["commit"] += 1

    await asyncio.gather(
        *(registrar(k) for k in range(8)),
        *(chatter(k, m) for k, m in enumerate(members)),
        committer(),
    )
    print(f"\nsoak {SOAK_SECONDS:.0f} s on two nodes: {counts}")
    assert server_errors(pg_pair) == []
    await _check_log(pg_schema_sync, len(members) + counts["register"])
