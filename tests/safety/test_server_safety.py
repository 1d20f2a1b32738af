"""The server's side of franking, reports and blocks, at the HTTP and storage level (raw
transports and hand-made MLS messages, no client library logic)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from doorless.client.errors import InvalidRequest
from doorless.client.transport import Transport
from doorless.codec import decode, encode
from doorless.franking import (
    AbuseReport,
    FrankedContent,
    FrankingAAD,
    ReportReason,
    SenderIdentity,
    SenderMismatch,
    ServerFrank,
    frank_content,
    make_report,
    verify_received,
)
from doorless.mls.framing import (
    ContentType,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    SenderMember,
)
from doorless.mls.framing import FramedContent as MlsFramedContent
from doorless.mls.tree_math import LeafIndex
from doorless.server.storage.base import (
    Delivery,
    DeviceRecord,
    EpochGate,
    FrankingKeyRecord,
    FrankingKeys,
    LinkRecord,
    ReportRecord,
    Storage,
)
from doorless.server.storage.postgres import PostgresStorage
from doorless.server.storage.sqlite import SQLiteStorage
from server.helpers import (
    FakeClock,
    Harness,
    commit,
    make_config,
    private_message,
    running,
    welcome,
)
from support.services import PG_DSN, require_async

pytestmark = pytest.mark.asyncio

GROUP = b"safety-group"


def device_id(t: Transport) -> str:
    assert t.device is not None
    return t.device.device_id


def identity(t: Transport) -> SenderIdentity:
    assert t.username is not None
    return SenderIdentity(t.username.encode(), device_id(t).encode())


def franked(sender: Transport, text: bytes, epoch: int = 0) -> tuple[bytes, bytes, bytes]:
    """(MLSMessage bytes, application data, AAD) of an application message whose ciphertext
    is a stand-in (the server never decrypts): the AAD carries a real tag."""
    msg = frank_content(
        FrankedContent(
            salt=bytes(16),
            sender=identity(sender),
            group_id=GROUP,
            sent_at_ms=1,
            media_type=b"text/plain",
            body=text,
        )
    )
    data = encode(
        MLSMessage(
            PrivateMessage(
                group_id=GROUP,
                epoch=epoch,
                content_type=ContentType.application,
                authenticated_data=msg.authenticated_data,
                encrypted_sender_data=b"\x01" * 16,
                ciphertext=b"\x00" * 32,
            )
        )
    )
    return data, msg.application_data, msg.authenticated_data


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(make_config(tmp_path / "data"), FakeClock()) as h:
        yield h


# --- stamping -----------------------------------------------------------------------------------


async def test_info_publishes_the_franking_key(server: Harness) -> None:
    info = await server.client().server_info()
    assert info.franking_public_key == server.ctx.franking.public_key
    assert info.franking_public_key is not None and len(info.franking_public_key) == 32


async def test_application_messages_are_stamped_with_the_authenticated_sender(
    server: Harness,
) -> None:
    alice, bob = await server.user("alice"), await server.user("bob")
    laptop = await server.linked(bob)
    data, app_data, aad = franked(alice, b"hi")
    await alice.send(data, [device_id(bob), device_id(laptop)])
    await alice.send(commit(GROUP, 0), [device_id(bob)])
    second_data, app2, aad2 = franked(alice, b"again", epoch=1)
    await alice.send(second_data, [device_id(bob)])

    page = (await bob.fetch()).messages
    assert [m.frank is not None for m in page] == [True, False, True]  # no frank on commits
    (on_laptop,) = (await laptop.fetch()).messages
    assert on_laptop.frank == page[0].frank  # one frank per message, fanned out
    key = server.ctx.franking.public_key
    franks = [decode(ServerFrank, m.frank) for m in (page[0], page[2]) if m.frank]
    for frank, (ad, a) in zip(franks, [(app_data, aad), (app2, aad2)], strict=True):
        verify_received(
            ad, a, frank, server_public_key=key, mls_sender=identity(alice), group_id=GROUP
        )
        assert abs(frank.accepted_at_ms - server.clock.now * 1000) < 1000
    assert [f.server_seq for f in franks] == [1, 2]  # the group's sequence numbers
    with pytest.raises(SenderMismatch):
        verify_received(
            app_data,
            aad,
            franks[0],
            server_public_key=key,
            mls_sender=identity(bob),
            group_id=GROUP,
        )


@pytest.mark.parametrize(
    "aad",
    [b"", b"\x00", encode(FrankingAAD(bytes(32)))[:-1], b"\x03\x00\x21\x00"],
    ids=["empty", "no-items", "truncated", "other-component"],
)
async def test_application_messages_without_a_tag_are_refused(server: Harness, aad: bytes) -> None:
    alice, bob = await server.user("alice"), await server.user("bob")
    data = encode(
        MLSMessage(
            PrivateMessage(GROUP, 0, ContentType.application, aad, b"\x01" * 16, b"\x00" * 32)
        )
    )
    before = server.db_dump()
    with pytest.raises(InvalidRequest) as refused:
        await alice.send(data, [device_id(bob)])
    assert refused.value.code == "malformed_message"
    assert server.db_dump() == before
    # Handshake messages need no tag.
    await alice.send(private_message(GROUP, 0, ContentType.proposal), [device_id(bob)])


async def test_application_data_in_a_public_message_is_refused(server: Harness) -> None:
    alice, bob = await server.user("alice"), await server.user("bob")
    public = PublicMessage(
        MlsFramedContent(
            GROUP, 0, SenderMember(LeafIndex(0)), encode(FrankingAAD(bytes(32))), b"hi"
        ),
        FramedContentAuthData(b"\x00" * 64),
        membership_tag=b"\x00" * 32,
    )
    with pytest.raises(InvalidRequest) as refused:
        await alice.send(encode(MLSMessage(public)), [device_id(bob)])
    assert refused.value.code == "malformed_message"


# --- reports ------------------------------------------------------------------------------------


async def test_report_endpoint_verifies_and_files(server: Harness) -> None:
    alice, bob = await server.user("alice"), await server.user("bob")
    data, app_data, aad = franked(alice, b"the reported words")
    await alice.send(data, [device_id(bob)])
    (m,) = (await bob.fetch()).messages
    assert m.frank is not None
    frank = decode(ServerFrank, m.frank)
    report = make_report(app_data, aad, frank, ReportReason.threat, "note")
    filed = await bob.report(encode(report))
    assert filed.sender == "alice" and filed.attachments == []
    (record,) = await server.ctx.storage.list_reports(0, 10)
    assert record.report_id == filed.report_id and record.server_seq == frank.server_seq
    assert record.reason == "threat" and decode(AbuseReport, record.report) == report

    # Replayed: recognised as the same report (same id), not filed twice.
    again = await bob.report(encode(report))
    assert again.report_id == filed.report_id
    assert len(await server.ctx.storage.list_reports(0, 10)) == 1

    # Forged: another server's frank (a keyring this server never had) of the same content.
    forged = dataclasses.replace(report, frank=dataclasses.replace(frank, key_id=7))
    with pytest.raises(InvalidRequest) as refused:
        await bob.report(encode(forged))
    assert refused.value.code == "invalid_report"
    assert len(await server.ctx.storage.list_reports(0, 10)) == 1


async def test_report_body_is_validated(server: Harness) -> None:
    await server.user("bob")
    async with server.http() as http:
        for body in ({}, {"report": "not base64!"}, {"report": "AA==", "extra": 1}):
            r = await http.post("/v1/reports", json=body)
            assert r.status_code in (401, 422)


# --- blocks -------------------------------------------------------------------------------------


async def test_blocks_stop_application_messages_and_welcomes_not_commits(server: Harness) -> None:
    alice, bob, carol = [await server.user(u) for u in ("alice", "bob", "carol")]
    laptop = await server.linked(bob)
    await bob.block("alice")
    await laptop.block("alice")  # idempotent, from any device of the account
    assert await laptop.list_blocks() == ["alice"] and await alice.list_blocks() == []

    everyone = [device_id(bob), device_id(laptop), device_id(carol)]
    await alice.send(franked(alice, b"x")[0], everyone)
    await alice.send(commit(GROUP, 0), everyone, welcome=welcome(0), welcome_recipients=everyone)
    for t in (bob, laptop):
        page = (await t.fetch()).messages
        assert [decode(MLSMessage, m.data).wire_format.name for m in page] == [
            "mls_private_message"
        ]  # the commit only
    assert len((await carol.fetch()).messages) == 3

    await bob.unblock("alice")
    assert await laptop.list_blocks() == []
    await alice.send(franked(alice, b"y", epoch=1)[0], [device_id(bob)])
    page = (await bob.fetch()).messages
    assert len(page) == 2


async def test_block_requests_are_checked(server: Harness) -> None:
    bob = await server.user("bob")
    with pytest.raises(InvalidRequest):
        await bob.block("bob")
    async with server.http() as http:
        token = await bob._ensure_token()
        headers = {"Authorization": f"Bearer {token}"}
        assert (await http.put("/v1/blocks/Not_Valid", headers=headers)).status_code == 422
        assert (await http.put("/v1/blocks/eve", headers=headers)).status_code == 204
        assert (await http.put("/v1/blocks/eve")).status_code == 401


# --- storage contract ---------------------------------------------------------------------------


async def _postgres(schema: str) -> Storage:
    """A PostgreSQL store in a fresh schema (skipped without PostgreSQL, a failure in CI)."""
    await require_async("postgres")
    return PostgresStorage(PG_DSN, schema=schema)


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The storage contract of franking keys, reports and blocks, on both stores."""
    schema = f"dl_safety_{secrets.token_hex(6)}"
    s = (
        SQLiteStorage(tmp_path / "db.sqlite3")
        if request.param == "sqlite"
        else await _postgres(schema)
    )
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        if request.param == "postgres":
            conn = await asyncpg.connect(PG_DSN)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()


async def test_franking_keys_are_minted_once_and_rotated_once(storage: Storage) -> None:
    first = FrankingKeys(b"s" * 32, (FrankingKeyRecord(0, b"k" * 32, 10),))
    other = FrankingKeys(b"t" * 32, (FrankingKeyRecord(0, b"l" * 32, 11),))
    assert await storage.franking_keys(first) == first
    assert await storage.franking_keys(other) == first  # a second process gets the first's
    new = FrankingKeyRecord(1, b"m" * 32, 20)
    assert await storage.rotate_franking_key(0, new) is True
    assert await storage.rotate_franking_key(0, FrankingKeyRecord(1, b"n" * 32, 21)) is False
    keys = (await storage.franking_keys(other)).keys
    assert keys == (FrankingKeyRecord(0, b"k" * 32, 10, 20), new)
    assert await storage.delete_franking_keys([1]) == 0  # the current key stays
    assert await storage.delete_franking_keys([0, 5]) == 1
    assert (await storage.franking_keys(other)).keys == (new,)


async def test_deliver_stamps_with_consecutive_group_sequence_numbers(
    storage: Storage,
) -> None:
    for name in ("alice", "bob"):
        await storage.create_account(
            DeviceRecord(name * 2, name, name.encode() * 4, None, b"", 0), None, 0
        )
    seen: list[int] = []

    def stamp(seq: int) -> bytes:
        seen.append(seq)
        return b"frank-%d" % seq

    gate = EpochGate(GROUP, 0, False)
    for i in range(3):
        await storage.deliver(
            "alicealice",
            f"m{i}xxxxxx",
            bytes(32 - i) + b"x" * i,
            [Delivery(b"data", ("bobbob",), stamp)],
            gate,
            0,
        )
    # No recipient (everyone blocks the sender): no stamp, no sequence number used.
    await storage.deliver(
        "alicealice", "m9xxxxxx", b"y" * 32, [Delivery(b"data", (), stamp)], gate, 0
    )
    # A repeat of an accepted send is not stamped again.
    await storage.deliver(
        "alicealice", "m0xxxxxx", bytes(32), [Delivery(b"data", ("bobbob",), stamp)], gate, 0
    )
    assert seen == [1, 2, 3]
    assert [m.frank for m in await storage.fetch("bobbob", 0, 10)] == [
        b"frank-1",
        b"frank-2",
        b"frank-3",
    ]


async def test_blocks_and_reports_in_storage(storage: Storage) -> None:
    for name, device in (("alice", "a1"), ("bob", "b1"), ("bob", "b2"), ("carol", "c1")):
        record = DeviceRecord(device, name, device.encode() * 16, None, b"", 0)
        if device == "b2":
            await storage.create_link(LinkRecord("CODE", "bob", "b2", record.device_key, 0, 100))
            await storage.approve_link("CODE", dataclasses.replace(record, approved_by="b1"), 1)
        else:
            await storage.create_account(record, None, 0)
    await storage.set_block("bob", "alice", True, 5)
    await storage.set_block("bob", "alice", True, 6)
    await storage.set_block("carol", "zed", True, 6)
    assert await storage.list_blocks("bob") == ["alice"]
    assert await storage.blocking_devices("alice", ["a1", "b1", "b2", "c1"]) == {"b1", "b2"}
    assert await storage.blocking_devices("zed", ["b1", "c1"]) == {"c1"}
    await storage.set_block("bob", "alice", False, 7)
    assert await storage.blocking_devices("alice", ["b1", "b2"]) == set()

    report = ReportRecord("bob", "b1", "alice", "a1", GROUP, 4, "spam", b"\x01", ("ok", "gone"), 9)
    first = await storage.add_report(report)
    # The same message reported again by the same user (a replay, or their other device): the
    # same report, nothing filed twice; by another user: a report of its own.
    replay = dataclasses.replace(report, reporter_device_id="b2", reason="other", created_at=10)
    assert await storage.add_report(replay) == first
    by_carol = dataclasses.replace(report, reporter_username="carol", reporter_device_id="c1")
    carols = await storage.add_report(by_carol)
    assert carols != first
    assert await storage.delete_reports([carols]) == 1
    second = await storage.add_report(dataclasses.replace(report, server_seq=5, reason="other"))
    listed = await storage.list_reports(0, 10)
    assert [r.report_id for r in listed] == [first, second]
    assert listed[0] == dataclasses.replace(report, report_id=first)
    assert await storage.list_reports(first, 10) == [listed[1]]
    assert await storage.delete_reports([first, 99]) == 1
    assert [r.report_id for r in await storage.list_reports(0, 10)] == [second]


async def test_openapi_describes_the_safety_routes(server: Harness) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app), base_url="http://testserver"
    ) as http:
        spec = (await http.get("/openapi.json")).json()
    for path in ("/v1/reports", "/v1/blocks", "/v1/blocks/{username}"):
        assert path in spec["paths"]
    assert "franking_public_key" in spec["components"]["schemas"]["ServerInfo"]["properties"]
    assert "frank" in spec["components"]["schemas"]["QueuedMessage"]["properties"]
