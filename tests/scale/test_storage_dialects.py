"""The same operations on SQLite and PostgreSQL give the same results.

One scripted sequence calls every `Storage` method (successes and each rejection) and writes
down what came back; the transcripts of the two dialects must be equal, line by line. Values
that are random by design (the server id, the KT seed) are recorded by shape only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from doorless.server.storage.base import (
    AttachmentRecord,
    Delivery,
    DeviceRecord,
    EpochConflict,
    EpochGate,
    FrankingKeyRecord,
    FrankingKeys,
    GroupAccess,
    GroupState,
    GroupUpdate,
    KtLogEntry,
    KtVersion,
    LinkRecord,
    Rejected,
    ReportRecord,
    Storage,
    UnknownDevice,
)
from doorless.server.storage.sqlite import SQLiteStorage

from .conftest import PgSchema

pytestmark = pytest.mark.asyncio


def _device(n: int, username: str | None = None, approved_by: str | None = None) -> DeviceRecord:
    return DeviceRecord(
        device_id=f"{n:032x}",
        username=username or f"user{n}",
        device_key=n.to_bytes(4, "big") * 8,
        approved_by=approved_by,
        approval_signature=b"sig%d" % n,
        created_at=10 + n,
    )


def _kt(label: bytes, version: int, n: int) -> KtVersion:
    return KtVersion(label, version, b"v%d" % n, b"o%d" % n, b"k%03d" % n, b"c%d" % n)


class Transcript:
    """Runs steps and records each result, or the rejection it raised."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Any]] = []

    async def __call__(self, name: str, call: Awaitable[Any]) -> Any:
        try:
            result = await call
        except Rejected as e:
            detail: dict[str, Any] = {"message": str(e)}
            if isinstance(e, EpochConflict):
                detail["current_epoch"] = e.current_epoch
            if isinstance(e, UnknownDevice):
                detail["device_ids"] = e.device_ids
            self.lines.append((name, (type(e).__name__, detail)))
            return None
        self.lines.append((name, result))
        return result


async def _scenario(store: Storage) -> list[tuple[str, Any]]:
    t = Transcript()
    a, b, c = _device(1), _device(2), _device(3)
    t.lines.append(("server_id", len(await store.server_id())))

    # invites, accounts, devices (with KT versions)
    await t("invite", store.create_invite(b"i" * 32, 1, 100))
    await t("account a", store.create_account(a, b"i" * 32, 2, _kt(b"user1", 0, 1)))
    await t("invite used", store.create_account(b, b"i" * 32, 2))
    await t("invite unknown", store.create_account(b, b"x" * 32, 2))
    await t("account b", store.create_account(b, None, 3, _kt(b"user2", 0, 2)))
    await t("username taken", store.create_account(_device(9, "user1"), None, 3))
    await t(
        "key taken",
        store.create_account(DeviceRecord("f" * 32, "u", a.device_key, None, b"", 1), None, 3),
    )
    await t("kt version gap", store.create_account(_device(8), None, 3, _kt(b"user8", 5, 8)))
    await t("kt key taken", store.create_account(_device(7), None, 3, _kt(b"user7", 0, 1)))
    await t("get a", store.get_device(a.device_id))
    await t("get none", store.get_device("0" * 32))
    await t("list user1", store.list_devices("user1"))
    await t("list nobody", store.list_devices("nobody"))

    # authentication
    await t("challenge", store.put_challenge(b"n" * 32, 50))
    await t("take", store.take_challenge(b"n" * 32, 10))
    await t("take again", store.take_challenge(b"n" * 32, 10))
    await t("challenge 2", store.put_challenge(b"m" * 32, 50))
    await t("take expired", store.take_challenge(b"m" * 32, 60))
    await t("token", store.put_token(b"t" * 32, a.device_id, 100))
    await t("token b", store.put_token(b"u" * 32, b.device_id, 100))
    await t("token device", store.token_device(b"t" * 32, 10))
    await t("token expired", store.token_device(b"t" * 32, 100))
    await t("token holder", store.token_holder(b"t" * 32, 10))
    await t("token holder expired", store.token_holder(b"t" * 32, 100))

    # device linking
    link = LinkRecord("code1", "user1", c.device_id, b"\x07" * 32, 5, 100)
    await t("link", store.create_link(link))
    await t("link code taken", store.create_link(link))
    await t("link no user", store.create_link(LinkRecord("code2", "nobody", "d", b"z" * 32, 5, 9)))
    await t(
        "link key taken", store.create_link(LinkRecord("code3", "user1", "d", a.device_key, 5, 9))
    )
    await t("get link", store.get_link("code1", 10))
    await t("get link expired", store.get_link("code1", 100))
    linked = DeviceRecord(c.device_id, "user1", b"\x07" * 32, a.device_id, b"approval", 11)
    await t("approve", store.approve_link("code1", linked, 11, _kt(b"user1", 1, 3)))
    await t("approve again", store.approve_link("code1", linked, 12))
    await t("get link approved", store.get_link("code1", 12))
    await t("list user1 again", store.list_devices("user1"))

    # key packages
    await t("kp add", store.add_key_packages(b.device_id, [b"kp1", b"kp2", b"kp3"], b"lr1", 5))
    await t("kp too many", store.add_key_packages(b.device_id, [b"kp4"] * 3, None, 5))
    await t("kp replace last resort", store.add_key_packages(b.device_id, [b"kp4"], b"lr2", 5))
    for i in range(6):
        await t(f"claim {i}", store.claim_key_package(b.device_id))
    await t("kp count", store.key_package_count(b.device_id))
    await t("claim none", store.claim_key_package(a.device_id))
    await t("kp count none", store.key_package_count(a.device_id))

    # delivery: epochs, franking stamps, idempotency, refusals
    stamped: list[int] = []

    def stamp(seq: int) -> bytes:
        stamped.append(seq)
        return b"frank%d" % seq

    g = b"group"
    everyone = (a.device_id, b.device_id, c.device_id)
    await t(
        "commit 0",
        store.deliver(
            a.device_id, "m1", b"d1", [Delivery(b"commit", everyone)], EpochGate(g, 0, True), 20
        ),
    )
    await t(
        "duplicate",
        store.deliver(
            a.device_id, "m1", b"d1", [Delivery(b"commit", everyone)], EpochGate(g, 0, True), 21
        ),
    )
    await t("id conflict", store.deliver(a.device_id, "m1", b"other", [], None, 21))
    await t("stale commit", store.deliver(b.device_id, "m2", b"d2", [], EpochGate(g, 0, True), 21))
    await t(
        "wrong epoch",
        store.deliver(
            b.device_id, "m3", b"d3", [Delivery(b"x", everyone)], EpochGate(g, 5, False), 21
        ),
    )
    await t(
        "unknown recipient",
        store.deliver(
            b.device_id, "m4", b"d4", [Delivery(b"x", (a.device_id, "e" * 32, "d" * 32))], None, 21
        ),
    )
    app = [
        Delivery(b"app1", (b.device_id, c.device_id, b.device_id), stamp),
        Delivery(b"app2", (a.device_id,), stamp),
        Delivery(b"nobody", (), stamp),
    ]
    await t("application", store.deliver(a.device_id, "m5", b"d5", app, EpochGate(g, 1, False), 22))
    await t(
        "application 2",
        store.deliver(
            b.device_id,
            "m6",
            b"d6",
            [Delivery(b"app3", everyone, stamp)],
            EpochGate(g, 1, False),
            23,
        ),
    )
    await t(
        "commit 1 alone",
        store.deliver(a.device_id, "m7", b"d7", [Delivery(b"c", ())], EpochGate(g, 1, True), 24),
    )
    await t(
        "no gate",
        store.deliver(c.device_id, "m8", b"d8", [Delivery(b"direct", (a.device_id,))], None, 25),
    )
    t.lines.append(("stamps", list(stamped)))
    await t("group epoch", store.group_epoch(g))
    await t("group epoch none", store.group_epoch(b"none"))

    # validated groups: registration, member set, a commit's update behind the epoch gate
    v = b"validated"
    s0 = GroupState(v, 0, b"state0", b"info0")
    await t("register", store.register_group(s0, [b.device_id, a.device_id]))
    await t("register again", store.register_group(s0, [a.device_id]))
    await t("register used group", store.register_group(GroupState(g, 0, b"s", b"i"), []))
    await t("group state", store.group_state(v))
    await t("group state none", store.group_state(b"none"))
    await t("member a", store.is_group_member(v, a.device_id))
    await t("member c", store.is_group_member(v, c.device_id))
    await t("access a", store.group_access(v, a.device_id))
    await t("access c", store.group_access(v, c.device_id))
    await t("access none", store.group_access(b"none", a.device_id))
    s1 = GroupState(v, 1, b"state1", b"info1")
    update = GroupUpdate(s1, added=(c.device_id,), removed=(b.device_id,))
    await t(
        "unvalidated commit",
        store.deliver(a.device_id, "v0", b"v0", [], EpochGate(v, 0, True), 26),
    )
    await t(
        "validated commit",
        store.deliver(a.device_id, "v1", b"v1", [], EpochGate(v, 0, True, update), 26),
    )
    await t(
        "stale validated commit",
        store.deliver(c.device_id, "v2", b"v2", [], EpochGate(v, 0, True, update), 26),
    )
    await t("group state after", store.group_state(v))
    await t("group epoch after", store.group_epoch(v))
    for d in everyone:
        await t(f"member {d[-1]} after", store.is_group_member(v, d))
        await t(f"access {d[-1]} after", store.group_access(v, d))
    for d in everyone:
        await t(f"fetch {d[-1]}", store.fetch(d, 0, 100))
    await t("fetch after", store.fetch(b.device_id, 1, 1))
    # Fetches arriving together (PostgreSQL answers them with one query): each its own page.
    await t(
        "fetches together",
        asyncio.gather(*(store.fetch(d, after, 2) for d in everyone for after in (0, 1))),
    )
    await t("ack", store.ack(b.device_id, [1, 1, 3, 99]))
    await t("ack none", store.ack(b.device_id, []))
    # Acks arriving together (PostgreSQL coalesces them into one transaction): each gets its
    # own count; a seq named twice counts once.
    await t(
        "acks together",
        asyncio.gather(
            store.ack(b.device_id, [2, 4]),
            store.ack(a.device_id, [1, 2, 50]),
            store.ack(b.device_id, [2]),
        ),
    )
    await t("fetch b after ack", store.fetch(b.device_id, 0, 100))

    # revocation drops tokens, queue, key packages
    await t("revoke b", store.revoke_device(b.device_id, 30, _kt(b"user2", 1, 4)))
    await t("revoke again", store.revoke_device(b.device_id, 31))
    await t("token revoked", store.token_device(b"u" * 32, 10))
    await t("token holder revoked", store.token_holder(b"u" * 32, 10))
    await t("fetch revoked", store.fetch(b.device_id, 0, 100))
    await t("kp revoked", store.key_package_count(b.device_id))
    await t(
        "send to revoked",
        store.deliver(a.device_id, "m9", b"d9", [Delivery(b"x", (b.device_id,))], None, 31),
    )
    await t("get revoked", store.get_device(b.device_id))

    # attachments
    await t("attachment", store.add_attachment(AttachmentRecord("att1", 10, 1, 50)))
    await t("attachment 2", store.add_attachment(AttachmentRecord("att2", 20, 1, 150)))
    await t("get attachment", store.get_attachment("att1", 10))
    await t("get expired attachment", store.get_attachment("att1", 50))
    await t("attachment ids", store.attachment_ids())
    await t("take expired", store.take_expired_attachments(60))
    await t("attachment ids after", store.attachment_ids())

    # housekeeping: expired challenges, tokens, links, invites, old idempotency records
    await t("purge", store.purge_expired(1000, 23))
    await t("token purged", store.token_device(b"t" * 32, 10))
    await t("old id reusable", store.deliver(a.device_id, "m1", b"new", [], None, 1000))
    await t("recent id kept", store.deliver(a.device_id, "m8", b"d8", [], None, 1000))

    # franking keys, reports, blocks
    initial = FrankingKeys(b"s" * 32, (FrankingKeyRecord(1, b"h1" * 16, 100),))
    await t("franking init", store.franking_keys(initial))
    await t("franking stored", store.franking_keys(FrankingKeys(b"z" * 32, ())))
    await t("rotate", store.rotate_franking_key(1, FrankingKeyRecord(2, b"h2" * 16, 200)))
    await t("rotate stale", store.rotate_franking_key(1, FrankingKeyRecord(2, b"h3" * 16, 300)))
    await t("delete keys", store.delete_franking_keys([1, 2, 3]))
    keys = await t("franking after", store.franking_keys(initial))
    t.lines.append(("franking repr", repr(keys)))
    for n in range(3):
        report = ReportRecord(
            "user1",
            a.device_id,
            "user2",
            b.device_id,
            g,
            n,
            "spam",
            b"r%d" % n,
            ("ok", "gone") if n else (),
            40 + n,
        )
        await t(f"report {n}", store.add_report(report))
    await t("list reports", store.list_reports(0, 10))
    await t("list reports after", store.list_reports(1, 1))
    await t("delete reports", store.delete_reports([1, 3, 7]))
    await t("list reports left", store.list_reports(0, 10))
    await t("block", store.set_block("user1", "user2", True, 50))
    await t("block again", store.set_block("user1", "user2", True, 51))
    await t("block 3", store.set_block("user1", "user9", True, 51))
    await t("blocks", store.list_blocks("user1"))
    await t("blocking", store.blocking_devices("user2", [a.device_id, b.device_id, c.device_id]))
    await t("blocking none", store.blocking_devices("user2", []))
    await t("unblock", store.set_block("user1", "user2", False, 52))
    await t("blocks after", store.list_blocks("user1"))

    # key transparency
    seed = await store.kt_signing_seed()
    t.lines.append(("kt seed", (len(seed), seed == await store.kt_signing_seed())))
    await t("kt latest", store.kt_latest_version(b"user1"))
    await t("kt latest none", store.kt_latest_version(b"nobody"))
    await t("kt versions", store.kt_versions(b"user1", 0))
    await t("kt versions from 1", store.kt_versions(b"user1", 1))
    pending = await t("kt pending", store.kt_pending())
    first = [(v.search_key, v.commitment) for v in pending[:2]]
    await t("kt append", store.kt_append(KtLogEntry(0, 1000, b"root0", b"cp0", tuple(first))))
    await t("kt append gap", store.kt_append(KtLogEntry(2, 1001, b"root2", b"cp2", ())))
    await t("kt append taken", store.kt_append(KtLogEntry(0, 1001, b"root0", b"cp0", ())))
    await t(
        "kt append not pending",
        store.kt_append(KtLogEntry(1, 1001, b"root1", b"cp1", tuple(first))),
    )
    rest = [(v.search_key, v.commitment) for v in pending[2:]]
    await t("kt append 1", store.kt_append(KtLogEntry(1, 1002, b"root1", b"cp1", tuple(rest))))
    await t("kt pending after", store.kt_pending())
    await t("kt entries", store.kt_entries(0, 10))
    await t("kt entries from 1", store.kt_entries(1, 1))
    await t("kt entries none", store.kt_entries(5, 10))
    await t("cosign", store.kt_add_cosignature(1, "w1", "line w1 1", 60))
    await t("cosign 2", store.kt_add_cosignature(1, "w2", "line w2 1", 60))
    await t("cosign replace", store.kt_add_cosignature(1, "w1", "line w1 1b", 61))
    await t("cosign newer", store.kt_add_cosignature(2, "w2", "line w2 2", 62))
    await t("cosignatures 1", store.kt_cosignatures(1))
    await t("cosignatures 2", store.kt_cosignatures(2))
    return t.lines


class _Alternating:
    """Several open stores over one database ("server processes"), used in turn per call."""

    def __init__(self, stores: list[Storage]) -> None:
        self._stores = stores
        self._next = 0

    def __getattr__(self, name: str) -> Any:
        store = self._stores[self._next % len(self._stores)]
        self._next += 1
        return getattr(store, name)


Make = Callable[[], Storage]


async def _run(make: Make, handles: int) -> list[tuple[str, Any]]:
    stores = [make() for _ in range(handles)]
    for store in stores:
        await store.open()
    try:
        return await _scenario(cast(Storage, _Alternating(stores)))
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
def dialects(tmp_path: Path, pg_schema: PgSchema) -> dict[str, Make]:
    return {
        "sqlite": lambda: SQLiteStorage(tmp_path / "doorless.sqlite3"),
        "postgres": lambda: pg_schema.storage(min_connections=1, max_connections=4),
    }


@pytest.mark.parametrize("handles", [1, 2], ids=["one-store", "two-stores"])
async def test_both_dialects_give_the_same_results(dialects: dict[str, Make], handles: int) -> None:
    """``two-stores``: each call goes to the next of two stores over the same database."""
    transcripts = {name: await _run(make, handles) for name, make in dialects.items()}
    sqlite, postgres = transcripts["sqlite"], transcripts["postgres"]
    assert [name for name, _ in sqlite] == [name for name, _ in postgres]
    for (name, got_sqlite), (_, got_postgres) in zip(sqlite, postgres, strict=True):
        assert got_sqlite == got_postgres, (
            f"{name}: sqlite {got_sqlite!r} != postgres {got_postgres!r}"
        )
    # The script exercised what it meant to (not just two equal lists of errors).
    results = dict(sqlite)
    assert results["commit 0"].group_epoch == 1 and results["duplicate"].duplicate
    assert results["stale commit"][0] == "EpochConflict"
    assert results["register again"][0] == results["register used group"][0] == "GroupExists"
    assert (
        results["unvalidated commit"][0]
        == results["stale validated commit"][0]
        == ("EpochConflict")
    )
    assert results["group state after"] == GroupState(b"validated", 1, b"state1", b"info1")
    assert [results[f"member {d} after"] for d in "123"] == [True, False, True]
    assert results["access a"] == GroupAccess(0, True)
    assert results["access c"] == GroupAccess(0, False)
    assert results["access none"] is None
    assert [results[f"access {d} after"] for d in "123"] == [
        GroupAccess(1, True),
        GroupAccess(1, False),
        GroupAccess(1, True),
    ]
    assert results["stamps"] == [1, 2, 3]
    assert results["ack"] == 2
    assert results["delete reports"] == 2
    assert len(results["kt entries"]) == 2
