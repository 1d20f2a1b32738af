"""A send on PostgreSQL costs at most two round trips, and every refusal still holds.

The server's PostgreSQL connections go through a TCP relay that counts round trips: bytes from
the server process that follow bytes from the database (or open the connection) start one,
however many protocol messages they carry. A send through ``POST /v1/messages`` is one read
(`Storage.send_context`: token, group access, franking number, blocks) and one function call
(`doorless.server.storage.pg_send`); a refusal costs no more and stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio

from doorless.client.errors import Conflict, EpochConflict, InvalidRequest, Unauthorized
from doorless.client.transport import Transport
from doorless.codec import decode
from doorless.franking import ServerFrank
from doorless.server.app import create_app
from doorless.server.storage.base import Delivery, EpochGate
from doorless.server.storage.postgres import PostgresStorage
from doorless.wire.protocol import b64encode
from server.helpers import Harness, commit, private_message
from support.servers import FakeClock
from support.servers import generous_config as make_config
from support.services import PG_DSN

from .conftest import PgSchema

pytestmark = pytest.mark.asyncio

GROUP = b"\x42" * 16
MAX_ROUND_TRIPS = 2


class RoundTrips:
    """A TCP relay to PostgreSQL that counts round trips on every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.count = 0
        self._target = target

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        db_reader, db_writer = await asyncio.open_connection(*self._target)
        last_from_db = [True]  # the last bytes on this connection came from the database
        await asyncio.gather(
            self._pipe(reader, db_writer, last_from_db, upstream=True),
            self._pipe(db_reader, writer, last_from_db, upstream=False),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        last_from_db: list[bool],
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if upstream and last_from_db[0]:
                    self.count += 1
                last_from_db[0] = not upstream
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError):
            writer.close()


@dataclass
class Setup:
    h: Harness
    trips: RoundTrips
    schema: str


@pytest_asyncio.fixture
async def setup(pg_schema: PgSchema, tmp_path: Path) -> AsyncIterator[Setup]:
    url = urlsplit(pg_schema.dsn)
    trips = RoundTrips((url.hostname or "127.0.0.1", url.port or 5432))
    relay = await asyncio.start_server(trips.handle, "127.0.0.1", 0)
    port = relay.sockets[0].getsockname()[1]
    netloc = url.netloc.rsplit("@", 1)
    user = f"{netloc[0]}@" if len(netloc) == 2 else ""
    dsn = url._replace(netloc=f"{user}127.0.0.1:{port}").geturl()
    storage = PostgresStorage(dsn, schema=pg_schema.schema, min_connections=1, max_connections=4)
    clock = FakeClock()
    config = make_config(tmp_path / "data")
    app = create_app(config, storage=storage, clock=clock, background_sweeper=False)
    try:
        async with app.router.lifespan_context(app):
            h = Harness(app, app.state.ctx, clock, config)
            try:
                yield Setup(h, trips, pg_schema.schema)
            finally:
                await h.close()
    finally:
        relay.close()


def device_id(t: Transport) -> str:
    assert t.device is not None
    return t.device.device_id


async def sql(s: Setup, statement: str, *args: object) -> int:
    """Run one statement in the test's schema, directly (not through the relay)."""
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": s.schema})
    try:
        return int(await conn.fetchval(statement, *args) or 0)
    finally:
        await conn.close()


async def stored(s: Setup) -> tuple[int, int, int]:
    return (
        await sql(s, "SELECT COUNT(*) FROM queue"),
        await sql(s, "SELECT COUNT(*) FROM payloads"),
        await sql(s, "SELECT COUNT(*) FROM sent"),
    )


class Counted:
    """``async with Counted(s) as c``: ``c.trips``, the round trips of the body."""

    def __init__(self, s: Setup) -> None:
        self._s = s
        self.trips = 0

    async def __aenter__(self) -> Counted:
        self._before = self._s.trips.count
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.trips = self._s.trips.count - self._before


async def users(s: Setup) -> tuple[Transport, Transport, Transport]:
    alice = await s.h.user("alice")
    bob = await s.h.user("bob")
    carol = await s.h.user("carol")
    # Warm up: the first use of a statement on a connection also prepares it (one more trip).
    for _ in range(3):
        await alice.send(private_message(GROUP, 0), [device_id(bob), device_id(carol)])
    return alice, bob, carol


async def test_a_send_is_at_most_two_round_trips(setup: Setup) -> None:
    s = setup
    alice, bob, carol = await users(s)
    before = await stored(s)
    async with Counted(s) as c:
        result = await alice.send(
            private_message(GROUP, 0, ciphertext=b"count me" * 4),
            [device_id(bob), device_id(carol)],
        )
    assert 0 < c.trips <= MAX_ROUND_TRIPS
    assert not result.duplicate
    assert await stored(s) == (before[0] + 2, before[1] + 1, before[2] + 1)
    # The message is there, franked with the group's next number (3 warm-up sends before it).
    page = await bob.fetch()
    assert page.messages[-1].data == private_message(GROUP, 0, ciphertext=b"count me" * 4)
    assert page.messages[-1].frank is not None
    # A commit (epoch-only group) and its repeat: also at most two each.
    async with Counted(s) as c:
        first = await alice.send(commit(GROUP, 0), [device_id(bob)], message_id="commit-0001")
    assert c.trips <= MAX_ROUND_TRIPS and first.group_epoch == 1
    async with Counted(s) as c:
        again = await alice.send(commit(GROUP, 0), [device_id(bob)], message_id="commit-0001")
    assert c.trips <= MAX_ROUND_TRIPS and again.duplicate and again.group_epoch == 1


async def test_every_refusal_on_the_new_path_stores_nothing(setup: Setup) -> None:
    s = setup
    alice, bob, carol = await users(s)
    await alice.send(commit(GROUP, 0), [device_id(bob)])  # the group moves to epoch 1
    await alice.send(private_message(GROUP, 1), [device_id(bob)], message_id="taken-0001")
    before = await stored(s)

    async with Counted(s) as c:  # a message for a stale epoch: the same typed error
        with pytest.raises(EpochConflict) as stale:
            await alice.send(private_message(GROUP, 0), [device_id(bob)])
    assert stale.value.current_epoch == 1 and c.trips <= MAX_ROUND_TRIPS
    with pytest.raises(EpochConflict) as lost:  # a commit for an epoch already committed
        await alice.send(commit(GROUP, 0), [device_id(bob)])
    assert lost.value.current_epoch == 1

    async with Counted(s) as c:  # same message id, different content
        with pytest.raises(Conflict) as reused:
            await alice.send(
                private_message(GROUP, 1, ciphertext=b"other" * 8),
                [device_id(bob)],
                message_id="taken-0001",
            )
    assert reused.value.code == "idempotency_conflict" and c.trips <= MAX_ROUND_TRIPS

    with pytest.raises(InvalidRequest) as unknown:  # a recipient that is no device
        await alice.send(private_message(GROUP, 1), [device_id(bob), "0" * 32])
    assert unknown.value.code == "unknown_recipient"

    await sql(s, "UPDATE devices SET revoked_at = 1 WHERE device_id = $1", device_id(carol))
    with pytest.raises(InvalidRequest) as revoked_recipient:
        await alice.send(private_message(GROUP, 1), [device_id(carol)])
    assert revoked_recipient.value.code == "unknown_recipient"
    with pytest.raises(Unauthorized) as revoked_sender:  # its token proves it is carol
        await carol.send(private_message(GROUP, 1), [device_id(bob)])
    assert revoked_sender.value.code == "device_revoked"
    # A token that was deleted (expired, or its device revoked): the raw request, since the
    # client would log in again.
    await sql(s, "DELETE FROM tokens WHERE device_id = $1", device_id(bob))
    async with s.h.http() as http:
        answer = await http.post(
            "/v1/messages",
            json={
                "message_id": "no-token-01",
                "data": b64encode(private_message(GROUP, 1)),
                "recipients": [device_id(alice)],
            },
            headers={"Authorization": f"Bearer {bob._token}"},
        )
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"

    assert await stored(s) == before


async def test_blocks_hold_on_the_new_path(setup: Setup) -> None:
    s = setup
    alice, bob, carol = await users(s)
    await bob.block("alice")
    bob_before = len((await bob.fetch()).messages)
    carol_before = len((await carol.fetch()).messages)
    async with Counted(s) as c:
        await alice.send(private_message(GROUP, 0), [device_id(bob), device_id(carol)])
    assert c.trips <= MAX_ROUND_TRIPS
    assert len((await bob.fetch()).messages) == bob_before
    assert len((await carol.fetch()).messages) == carol_before + 1


async def test_a_stamp_is_made_again_when_another_send_took_its_number(setup: Setup) -> None:
    """Sends racing in one group: each frank carries the number its message got, in order."""
    s = setup
    alice, bob, carol = await users(s)
    await asyncio.gather(
        *(
            alice.send(private_message(GROUP, 0, ciphertext=bytes([i]) * 32), [device_id(bob)])
            for i in range(12)
        ),
        *(
            carol.send(private_message(GROUP, 0, ciphertext=bytes([i]) * 32), [device_id(bob)])
            for i in range(12, 24)
        ),
    )
    franks = [m.frank for m in (await bob.fetch(limit=100)).messages]
    assert len(franks) == 3 + 24
    assert [decode(ServerFrank, f).server_seq for f in franks if f] == list(range(1, 28))


async def test_a_wrong_or_missing_franking_hint_is_stamped_again(setup: Setup) -> None:
    """`PostgresStorage.deliver` with a stale hint (or none): the function refuses the number,
    the storage stamps again with the group's real next number; the frank names it."""
    s = setup
    alice, bob, _ = await users(s)  # the warm-up took numbers 1-3 of GROUP
    storage = s.h.ctx.storage
    for i, hint in enumerate((99, None, 4)):
        await storage.deliver(
            device_id(alice),
            f"hinted-{i:04d}",
            bytes([i]) * 32,
            [Delivery(b"m%d" % i, (device_id(bob),), stamp=lambda n: n.to_bytes(8, "big"))],
            EpochGate(GROUP, 0, is_commit=False, next_seq=hint),
            1,
        )
    franks = [m.frank for m in await storage.fetch(device_id(bob), 0, 100)][-3:]
    assert franks == [n.to_bytes(8, "big") for n in (4, 5, 6)]


async def test_a_batch_of_acks_is_one_round_trip(setup: Setup) -> None:
    """`PostgresStorage.ack`: acks that arrive together (one `Coalescer` batch) are one call
    of ``doorless_ack``: entries deleted, each payload released once its last recipient
    acked, and each ack counted for what it alone deleted."""
    s = setup
    alice, bob, carol = await users(s)
    storage = s.h.ctx.storage
    bob_seqs = [m.seq for m in (await bob.fetch()).messages]
    carol_seqs = [m.seq for m in (await carol.fetch()).messages]
    assert len(bob_seqs) == len(carol_seqs) == 3
    # Warm up the statement on every pooled connection (preparing it is one more trip).
    for _ in range(4):
        assert await storage.ack(device_id(alice), [1]) == 0
    before = await stored(s)
    async with Counted(s) as c:
        counts = await asyncio.gather(
            storage.ack(device_id(bob), bob_seqs[:2]),
            storage.ack(device_id(carol), [*carol_seqs[:2], 999]),
            storage.ack(device_id(bob), bob_seqs[1:]),  # seq 2 again: counted once
        )
    # The first ack is flushed alone, the two that came while it ran share the next batch.
    assert c.trips <= 2
    assert counts == [2, 2, 1]
    # Two payloads had both their recipients ack; the third is still carol's.
    assert await stored(s) == (before[0] - 5, before[1] - 2, before[2])
    async with Counted(s) as c:
        assert await storage.ack(device_id(carol), carol_seqs) == 1
    assert c.trips == 1
    assert await stored(s) == (before[0] - 6, before[1] - 3, before[2])
