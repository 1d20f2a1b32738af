"""The storage contract, run against SQLite and PostgreSQL alike (``backend`` parameter).

Each concurrency test opens two stores over the same database ("two server processes") and
races operations through both. SQLite serializes them (one writer), so there they check the
plain semantics; on PostgreSQL they exercise the transactions and row locks of
`doorless.server.storage.postgres` (one commit per epoch, seqs in commit order, idempotent
retries, acks that free a shared payload exactly once, no deadlocks).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest

from doorless.errors import ConfigurationError
from doorless.server.kt_service import KtService
from doorless.server.storage import postgres
from doorless.server.storage.base import (
    Delivery,
    DeliveryResult,
    DeviceExists,
    DeviceRecord,
    EpochConflict,
    EpochGate,
    IdempotencyConflict,
    InviteInvalid,
    KtLogEntry,
    KtVersion,
    Storage,
    TooManyKeyPackages,
    UnknownDevice,
    UsernameTaken,
)
from doorless.server.storage.sql import SqlStorage

from .conftest import PgSchema

pytestmark = pytest.mark.asyncio

MakeStorage = Callable[..., Storage]


def device(n: int, username: str | None = None) -> DeviceRecord:
    return DeviceRecord(
        device_id=f"{n:032x}",
        username=username or f"user{n}",
        device_key=n.to_bytes(4, "big") * 8,
        approved_by=None,
        approval_signature=b"sig",
        created_at=1,
    )


@asynccontextmanager
async def opened(make: MakeStorage, count: int = 1) -> AsyncIterator[list[Storage]]:
    stores = [make(min_connections=1, max_connections=8) for _ in range(count)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


async def accounts(store: Storage, count: int, start: int = 1) -> list[str]:
    ids = []
    for n in range(start, start + count):
        await store.create_account(device(n), None, 1)
        ids.append(device(n).device_id)
    return ids


async def test_open_migrates_once_and_keeps_the_server_id(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        server_id = await store.server_id()
    async with opened(make_storage, 2) as (a, b):
        assert await a.server_id() == await b.server_id() == server_id


async def test_concurrent_first_start_migrates_once(pg_schema: PgSchema) -> None:
    stores = [pg_schema.storage(min_connections=1, max_connections=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert len({await s.server_id() for s in stores}) == 1
        conn = stores[0]._pool  # type: ignore[attr-defined]
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == [v for v, _, _ in postgres.MIGRATIONS]
    finally:
        for s in stores:
            await s.close()


async def test_a_newer_schema_is_refused(pg_schema: PgSchema) -> None:
    store = pg_schema.storage()
    await store.open()
    pool = store._pool
    assert pool is not None
    await pool.execute(
        "INSERT INTO schema_migrations VALUES ($1, 'from the future')",
        postgres.SCHEMA_VERSION + 1,
    )
    await store.close()
    with pytest.raises(ConfigurationError):
        await pg_schema.storage().open()


# --- accounts -------------------------------------------------------------------------------


async def test_accounts_devices_and_invites(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        await store.create_invite(b"h" * 32, 1, 100)
        await store.create_account(device(1), b"h" * 32, 2)
        with pytest.raises(InviteInvalid):  # used
            await store.create_account(device(2), b"h" * 32, 2)
        await store.create_invite(b"i" * 32, 1, 100)
        with pytest.raises(UsernameTaken):  # and the invite is not spent by the refusal
            await store.create_account(device(3, "user1"), b"i" * 32, 2)
        await store.create_account(device(3), b"i" * 32, 2)
        with pytest.raises(DeviceExists):
            await store.create_account(
                DeviceRecord("f" * 32, "other", device(1).device_key, None, b"s", 1), None, 2
            )
        assert [d.device_id for d in await store.list_devices("user1") or []] == [
            device(1).device_id
        ]
        assert await store.list_devices("nobody") is None
        got = await store.get_device(device(3).device_id)
        assert got == device(3)


async def test_racing_registrations_of_one_name_make_one_account(
    make_storage: MakeStorage,
) -> None:
    async with opened(make_storage, 2) as stores:
        results = await asyncio.gather(
            *(stores[n % 2].create_account(device(n, "taken"), None, 1) for n in range(1, 11)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, UsernameTaken) for r in results if r is not None)
        assert len(await stores[0].list_devices("taken") or []) == 1


# --- delivery -------------------------------------------------------------------------------


async def test_deliver_fetch_ack_and_idempotency(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        a, b, c = await accounts(store, 3)
        gate = EpochGate(b"g", 0, is_commit=False)
        first = await store.deliver(a, "m-1", b"d1", [Delivery(b"x", (b, c))], gate, 5)
        assert (first.group_epoch, first.duplicate) == (0, False)
        again = await store.deliver(a, "m-1", b"d1", [Delivery(b"x", (b, c))], gate, 6)
        assert again.duplicate
        with pytest.raises(IdempotencyConflict):
            await store.deliver(a, "m-1", b"d2", [Delivery(b"y", (b,))], gate, 6)
        (m,) = await store.fetch(b, 0, 10)
        assert (m.seq, m.data, m.received_at) == (1, b"x", 5)
        assert await store.ack(b, [m.seq, 99]) == 1
        assert await store.ack(b, [m.seq]) == 0
        assert await store.fetch(b, 0, 10) == []
        assert [q.data for q in await store.fetch(c, 0, 10)] == [b"x"]


@pytest.mark.parametrize("path", ["deliver", "transaction"])
async def test_what_a_send_queued_is_what_a_read_returns(
    make_storage: MakeStorage, path: str
) -> None:
    """`DeliveryResult.queued` (handed to the push sockets instead of a read) is exactly what
    `fetch` returns: seqs, data, time, frank. ``transaction``: PostgreSQL's multi-statement
    path (commits with a group update), which SQLite's `deliver` is anyway."""
    async with opened(make_storage) as (store,):
        a, b, c, d = await accounts(store, 4)
        await store.deliver(a, "before", b"0", [Delivery(b"earlier", (b, c))], None, 1)
        deliver = store.deliver if path == "deliver" else partial(SqlStorage.deliver, store)
        gate = EpochGate(b"g", 0, is_commit=False)
        app = Delivery(b"app", (c, b, d), stamp=lambda n: b"frank %d" % n)
        first = await deliver(a, "m-1", b"1", [app], gate, 5)
        parts = [Delivery(b"commit", (b, c)), Delivery(b"welcome", (c, d))]
        second = await deliver(a, "m-2", b"2", parts, EpochGate(b"g", 0, True), 6)
        for result in (first, second):
            assert result.queued, result
        for device in (b, c, d):
            read = await store.fetch(device, 1 if device != d else 0, 10)
            handed = [*first.queued.get(device, ()), *second.queued.get(device, ())]
            assert handed == read
        assert [m.data for m in second.queued[c]] == [b"commit", b"welcome"]
        assert first.queued[b][0].frank == b"frank 1"
        again = await deliver(a, "m-1", b"1", [app], gate, 7)
        assert again == DeliveryResult("m-1", 0, duplicate=True)  # a repeat hands nothing


async def test_a_refused_delivery_changes_nothing(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        a, b = await accounts(store, 2)
        gate = EpochGate(b"g", 3, is_commit=True)
        with pytest.raises(UnknownDevice) as e:
            await store.deliver(
                a, "m-1", b"d", [Delivery(b"c", (b,)), Delivery(b"w", ("e" * 32,))], gate, 1
            )
        assert e.value.device_ids == ("e" * 32,)
        assert await store.group_epoch(b"g") is None
        assert await store.fetch(b, 0, 10) == []
        done = await store.deliver(a, "m-1", b"d", [Delivery(b"c", (b,))], gate, 1)
        assert (done.group_epoch, done.duplicate) == (4, False)
        assert [m.seq for m in await store.fetch(b, 0, 10)] == [1]  # no seq was burnt


async def test_epoch_gate(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        a, b = await accounts(store, 2)
        to_b = [Delivery(b"m", (b,))]
        await store.deliver(a, "m-1", b"1", to_b, EpochGate(b"g", 7, False), 1)
        assert await store.group_epoch(b"g") == 7  # the first message fixes the epoch
        with pytest.raises(EpochConflict) as e:
            await store.deliver(a, "m-2", b"2", to_b, EpochGate(b"g", 6, False), 1)
        assert e.value.current_epoch == 7
        await store.deliver(a, "m-3", b"3", to_b, EpochGate(b"g", 7, True), 1)
        with pytest.raises(EpochConflict) as e:
            await store.deliver(a, "m-4", b"4", to_b, EpochGate(b"g", 7, True), 1)
        assert e.value.current_epoch == 8
        with pytest.raises(EpochConflict):
            await store.deliver(a, "m-5", b"5", to_b, EpochGate(b"g", 7, False), 1)
        assert await store.group_epoch(b"g") == 8


async def test_revoking_drops_the_queue_and_refuses_sends(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        a, b, c = await accounts(store, 3)
        await store.deliver(a, "m-1", b"1", [Delivery(b"x", (b, c))], None, 1)
        await store.revoke_device(b, 2)
        assert await store.fetch(b, 0, 10) == []
        with pytest.raises(UnknownDevice):
            await store.deliver(a, "m-2", b"2", [Delivery(b"y", (b, c))], None, 2)
        assert [m.data for m in await store.fetch(c, 0, 10)] == [b"x"]
        (m,) = await store.fetch(c, 0, 10)
        assert await store.ack(c, [m.seq]) == 1


# --- races between two processes -----------------------------------------------------------


async def test_one_commit_per_epoch_across_processes(make_storage: MakeStorage) -> None:
    async with opened(make_storage, 2) as stores:
        members = await accounts(stores[0], 6)
        await stores[0].deliver(members[0], "init", b"i", [], EpochGate(b"g", 0, True), 1)
        for epoch in range(1, 6):
            results = await asyncio.gather(
                *(
                    stores[i % 2].deliver(
                        sender,
                        f"c-{epoch}-{i}",
                        b"c",
                        [Delivery(f"commit {epoch} by {i}".encode(), tuple(members))],
                        EpochGate(b"g", epoch, is_commit=True),
                        1,
                    )
                    for i, sender in enumerate(members)
                ),
                return_exceptions=True,
            )
            winners = [r for r in results if not isinstance(r, BaseException)]
            assert len(winners) == 1 and winners[0].group_epoch == epoch + 1
            losers = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, EpochConflict) for r in losers), losers
            assert all(r.current_epoch == epoch + 1 for r in losers)  # type: ignore[union-attr]
        for member in members:  # each member sees exactly one commit per epoch, in order
            queue = [m.data.decode() for m in await stores[1].fetch(member, 0, 100)]
            assert [q.split()[1] for q in queue] == ["1", "2", "3", "4", "5"]


async def test_concurrent_sends_keep_every_queue_gapless_and_complete(
    make_storage: MakeStorage,
) -> None:
    rng = random.Random(7)
    async with opened(make_storage, 2) as stores:
        devices = await accounts(stores[0], 8)
        plans = []
        for i in range(120):
            recipients = rng.sample(devices, rng.randint(1, len(devices)))  # random order
            plans.append((devices[i % len(devices)], f"s-{i}", recipients))
        await asyncio.gather(
            *(
                stores[i % 2].deliver(
                    sender, mid, mid.encode(), [Delivery(mid.encode(), tuple(rcpts))], None, 1
                )
                for i, (sender, mid, rcpts) in enumerate(plans)
            )
        )
        for d in devices:
            queue = await stores[1].fetch(d, 0, 1000)
            assert [m.seq for m in queue] == list(range(1, len(queue) + 1))
            expected = sorted(mid for _, mid, rcpts in plans if d in rcpts)
            assert sorted(m.data.decode() for m in queue) == expected


async def test_a_reader_following_seqs_misses_nothing(make_storage: MakeStorage) -> None:
    """What the push loop relies on: ``fetch(after=last seen)`` while others commit never
    skips an entry (seqs become visible in order)."""
    async with opened(make_storage, 3) as (w1, w2, reader):
        senders = await accounts(w1, 4)
        target = (await accounts(w1, 1, start=100))[0]
        total = 200
        seen: list[bytes] = []
        done = asyncio.Event()

        async def write(store: Storage, offset: int) -> None:
            for i in range(offset, total, 2):
                await store.deliver(
                    senders[i % 4], f"w-{i}", b"d", [Delivery(str(i).encode(), (target,))], None, 1
                )

        async def follow() -> None:
            last = 0
            while True:
                finished = done.is_set()
                page = await reader.fetch(target, last, 50)
                for m in page:
                    assert m.seq == last + 1, f"gap after seq {last}: got {m.seq}"
                    seen.append(m.data)
                    last = m.seq
                if finished and not page:
                    return
                await asyncio.sleep(0)

        follower = asyncio.create_task(follow())
        await asyncio.gather(write(w1, 0), write(w2, 1))
        done.set()
        await follower
        assert sorted(int(x) for x in seen) == list(range(total))


async def test_racing_retries_of_one_message_enqueue_it_once(make_storage: MakeStorage) -> None:
    async with opened(make_storage, 2) as stores:
        a, b = await accounts(stores[0], 2)
        await stores[0].deliver(a, "setup", b"s", [], EpochGate(b"g", 0, True), 1)
        results = await asyncio.gather(
            *(
                stores[i % 2].deliver(
                    a, "the-one", b"d", [Delivery(b"commit", (b,))], EpochGate(b"g", 1, True), 1
                )
                for i in range(8)
            )
        )
        assert sum(not r.duplicate for r in results) == 1
        assert {r.group_epoch for r in results} == {2}  # retries learn the same outcome
        assert [m.data for m in await stores[0].fetch(b, 0, 10)] == [b"commit"]


async def test_group_messages_never_trail_the_commit_that_ends_their_epoch(
    make_storage: MakeStorage,
) -> None:
    async with opened(make_storage, 2) as stores:
        devices = await accounts(stores[0], 5)
        await stores[0].deliver(devices[0], "setup", b"s", [], EpochGate(b"g", 0, True), 1)

        async def app(i: int) -> bool:
            try:
                await stores[i % 2].deliver(
                    devices[i % 5],
                    f"a-{i}",
                    b"a",
                    [Delivery(b"app", tuple(devices))],
                    EpochGate(b"g", 1, False),
                    1,
                )
            except EpochConflict:
                return False
            return True

        async def commit() -> None:
            await asyncio.sleep(0.005)
            await stores[1].deliver(
                devices[0],
                "commit",
                b"c",
                [Delivery(b"commit", tuple(devices))],
                EpochGate(b"g", 1, True),
                1,
            )

        results = await asyncio.gather(*(app(i) for i in range(60)), commit())
        accepted = sum(1 for r in results[:-1] if r)
        for d in devices:
            queue = [m.data for m in await stores[0].fetch(d, 0, 1000)]
            assert queue.count(b"commit") == 1
            assert queue[-1] == b"commit"  # every accepted epoch-1 message came before it
            assert len(queue) == accepted + 1


async def test_racing_acks_free_each_shared_payload_once(make_storage: MakeStorage) -> None:
    async with opened(make_storage, 2) as stores:
        devices = await accounts(stores[0], 6)
        for i in range(20):
            await stores[0].deliver(
                devices[0], f"p-{i}", b"d", [Delivery(f"p{i}".encode(), tuple(devices))], None, 1
            )
        jobs = []
        for d in devices:
            seqs = [m.seq for m in await stores[0].fetch(d, 0, 100)]
            random.Random(d).shuffle(seqs)
            # every device acks everything twice, through both stores, in random chunks
            for s in (stores[0], stores[1]):
                for k in range(0, len(seqs), 3):
                    jobs.append(s.ack(d, seqs[k : k + 3]))
        random.Random(1).shuffle(jobs)
        counts = await asyncio.gather(*jobs)
        assert sum(counts) == 20 * len(devices)  # each entry deleted exactly once
        for d in devices:
            assert await stores[1].fetch(d, 0, 100) == []
        pool = getattr(stores[0], "_pool", None)
        if pool is not None:  # PostgreSQL: no payload left behind (nor freed too early)
            assert await pool.fetchval("SELECT COUNT(*) FROM payloads") == 0


async def test_racing_claims_hand_out_each_key_package_once(make_storage: MakeStorage) -> None:
    async with opened(make_storage, 2) as stores:
        owner, *_ = await accounts(stores[0], 1)
        kps = [f"kp-{i}".encode() for i in range(5)]
        await stores[0].add_key_packages(owner, kps, b"last-resort", limit=10)
        claims = await asyncio.gather(*(stores[i % 2].claim_key_package(owner) for i in range(12)))
        one_time = [c.key_package for c in claims if c is not None and not c.last_resort]
        assert sorted(one_time) == sorted(kps)
        assert all(c is not None for c in claims)
        count = await stores[0].key_package_count(owner)
        assert (count.count, count.last_resort) == (0, True)


async def test_racing_uploads_respect_the_limit(make_storage: MakeStorage) -> None:
    async with opened(make_storage, 2) as stores:
        owner, *_ = await accounts(stores[0], 1)
        results = await asyncio.gather(
            *(
                stores[i % 2].add_key_packages(
                    owner, [f"{i}-{k}".encode() for k in range(4)], None, limit=10
                )
                for i in range(6)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 2
        assert all(
            isinstance(r, TooManyKeyPackages) for r in results if isinstance(r, BaseException)
        )
        assert (await stores[1].key_package_count(owner)).count == 8


# --- undone registrations, the KT append lock, the integrity check ---------------------------


def kt_version(label: bytes) -> KtVersion:
    return KtVersion(
        label=label,
        version=0,
        value=b"device list",
        opening=b"o" * 16,
        search_key=hashlib.sha256(b"key" + label).digest(),
        commitment=hashlib.sha256(b"commitment" + label).digest(),
    )


async def test_undo_registration_removes_a_pending_account_and_gives_the_invite_back(
    make_storage: MakeStorage,
) -> None:
    async with opened(make_storage) as (store,):
        code = b"c" * 32
        await store.create_invite(code, 1, 10**10)
        version = kt_version(b"u:user1")
        expiry = await store.create_account(device(1), code, 2, version)
        assert expiry == 10**10
        assert await store.undo_registration(
            "user1", device(1).device_id, version.label, (code, 10**10)
        )
        assert await store.list_devices("user1") is None
        assert await store.kt_latest_version(version.label) is None
        assert await store.kt_pending() == []
        # The name and the invite are free again.
        await store.create_account(device(1), code, 3, version)
        with pytest.raises(InviteInvalid):
            await store.create_account(device(2), code, 3, None)


async def test_undo_registration_keeps_an_account_whose_version_was_logged(
    make_storage: MakeStorage,
) -> None:
    async with opened(make_storage) as (store,):
        version = kt_version(b"u:user1")
        await store.create_account(device(1), None, 2, version)
        added = ((version.search_key, version.commitment),)
        await store.kt_append(KtLogEntry(0, 1, b"r" * 32, b"checkpoint", added))
        assert not await store.undo_registration("user1", device(1).device_id, version.label, None)
        assert await store.list_devices("user1")
        assert await store.kt_latest_version(version.label) is not None


async def test_a_fresh_database_passes_its_check(make_storage: MakeStorage) -> None:
    async with opened(make_storage) as (store,):
        await accounts(store, 3)
        assert await store.check(full=True) == []
        assert await store.check(full=False) == []


async def test_the_kt_lock_excludes_other_processes(pg_schema: PgSchema) -> None:
    """Two stores over one PostgreSQL schema (two processes): while one holds the KT append
    lock, the other waits for it."""
    stores = [pg_schema.storage(min_connections=1, max_connections=3) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        order: list[str] = []

        async def other() -> None:
            async with stores[1].kt_lock():
                order.append("other")

        async with stores[0].kt_lock():
            waiting = asyncio.create_task(other())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # blocked by the first store's lock
            order.append("first")
        await asyncio.wait_for(waiting, 10)
        assert order == ["first", "other"]
    finally:
        for s in stores:
            await s.close()


async def test_a_publisher_needs_no_second_pooled_connection(pg_schema: PgSchema) -> None:
    """The KT lock has a connection of its own: with a pool of one, a publish still reads
    and appends (instead of waiting for the pool until it gives up)."""
    store = pg_schema.storage(min_connections=1, max_connections=1)
    await store.open()
    try:
        await store.create_account(device(1), None, 2, kt_version(b"u:user1"))
        kt = KtService(store, time.time)
        await asyncio.wait_for(kt.open(await store.server_id()), 20)  # publishes the pending
        assert kt.size == 1 and await store.kt_pending() == []
    finally:
        await store.close()
