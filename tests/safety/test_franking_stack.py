"""Message franking through the real stack: client -> server (stamp) -> client (verify), reports
to the server, forged and expired reports, and messages a sender crafts to be unreportable.

The server is the real ASGI app in process (``harness.safety_network``); the clients are real
`Client`s. Expected values come from `doorless.franking` and the wire formats, never from the
client code under test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client.harness import of_type, take_events
from doorless.client import Client, DeliveryFailed, FailureReason, InvalidRequest
from doorless.client.transport import MessagePage
from doorless.codec import decode, encode
from doorless.franking import (
    AbuseReport,
    FrankedContent,
    FrankingAAD,
    ReceivedFrank,
    ReportReason,
    SenderIdentity,
    ServerFrank,
    frank_content,
    verify_received,
)
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage
from doorless.wire import payload as wire_payload
from doorless.wire import rich
from doorless.wire.messages import QueuedMessage
from doorless.wire.payload import PAYLOAD_MEDIA_TYPE, Payload, text_payload
from server.helpers import scan

from .harness import Clock, SafetyNetwork, canary, safety_network

pytestmark = pytest.mark.asyncio


def _text(payload: Payload) -> str:
    """The text of a ``content`` payload (its MIMI container's one part)."""
    action = rich.classify(wire_payload.content_of(payload))
    assert isinstance(action, rich.Post) and action.text is not None
    return action.text


def identity(client: Client) -> SenderIdentity:
    return SenderIdentity(client.username.encode(), client.device_id.encode())


async def pair(net: SafetyNetwork) -> tuple[Client, Client, str]:
    alice = await net.user("alice")
    bob = await net.user("bob")
    chat = await alice.start_direct("bob")
    await bob.sync()
    take_events(bob)
    return alice, bob, chat.id


async def send_raw(
    sender: Client, conversation_id: str, application_data: bytes, aad: bytes
) -> None:
    """Send an application message with chosen application data and AAD (a sender that does
    not follow the rules), through the sender's own MLS group state."""
    gid = bytes.fromhex(conversation_id)
    async with sender._lock:
        conv = await sender._load(gid)
        assert conv is not None
        group, data = conv.mls.encrypt(application_data, authenticated_data=aad)
        new = conv.evolve(mls=group)
        await sender._save(new, lambda tx: tx.update_group(new.stored()))
        await sender._transport.send(data, sender._recipients(conv))


def content_of(author: Client, conversation_id: str, text: str, **changes: Any) -> FrankedContent:
    payload = text_payload(text, 1_700_000_000_000)
    base = FrankedContent(
        salt=bytes(range(16)),
        sender=identity(author),
        group_id=bytes.fromhex(conversation_id),
        sent_at_ms=payload.sent_at_ms,
        media_type=PAYLOAD_MEDIA_TYPE,
        body=encode(payload),
    )
    return dataclasses.replace(base, **changes)


# --- the stack ----------------------------------------------------------------------------------


async def test_messages_carry_a_tag_are_stamped_by_the_server_and_verified(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        secret = canary()
        await alice.send_text(chat, secret)

        # What the server holds: ciphertext whose AAD (in clear) carries the tag, and its frank.
        (queued,) = await net.ctx.storage.fetch(bob.device_id, 0, 10)
        body = decode(MLSMessage, queued.data).body
        assert isinstance(body, PrivateMessage) and body.content_type == ContentType.application
        tag = decode(FrankingAAD, body.authenticated_data).franking_tag
        assert queued.frank is not None and secret.encode() not in queued.data

        await bob.sync()
        (message,) = await bob.history(chat)
        assert message.text == secret
        row = await bob._tx(lambda tx: tx.get_message(message.local_id))
        assert row is not None and row.franking is not None
        kept = decode(ReceivedFrank, row.franking)
        assert kept.frank == decode(ServerFrank, queued.frank)
        assert decode(FrankingAAD, kept.authenticated_data).franking_tag == tag

        # Independently of the client: the frank verifies under the key /v1/info publishes,
        # for the sender the server authenticated (alice's device) and this group.
        info = await bob._transport.server_info()
        assert info.franking_public_key is not None
        content = verify_received(
            kept.application_data,
            kept.authenticated_data,
            kept.frank,
            server_public_key=info.franking_public_key,
            mls_sender=identity(alice),
            group_id=bytes.fromhex(chat),
        )
        assert _text(decode(Payload, content.body)) == secret  # a MIMI container
        assert content.salt and len(content.salt) == 16
        assert await bob.hidden_messages() == {}


async def test_a_message_without_a_franking_tag_is_refused_by_the_server(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, _bob, chat = await pair(net)
        with pytest.raises(InvalidRequest) as refused:
            await send_raw(alice, chat, encode(text_payload("unfranked", 1)), b"")
        assert refused.value.code == "malformed_message"


# A sender crafts messages that are displayed but cannot be reported: the receiver must hide
# every one of them (I7) and count it by the check that failed.


def _bad_tag(a: Client, chat: str) -> tuple[bytes, bytes]:
    franked = frank_content(content_of(a, chat, "bad tag"))
    other = frank_content(content_of(a, chat, "something else"))
    return franked.application_data, other.authenticated_data


def _spoofed_sender(a: Client, chat: str) -> tuple[bytes, bytes]:
    spoof = SenderIdentity(b"carol", b"0" * 32)
    franked = frank_content(content_of(a, chat, "from carol", sender=spoof))
    return franked.application_data, franked.authenticated_data


def _other_group(a: Client, chat: str) -> tuple[bytes, bytes]:
    franked = frank_content(content_of(a, chat, "elsewhere", group_id=b"\x07" * 32))
    return franked.application_data, franked.authenticated_data


def _short_salt(a: Client, chat: str) -> tuple[bytes, bytes]:
    # HMAC zero-pads keys: a 15-byte salt would make a second opening possible (FRANK-1).
    content = content_of(a, chat, "short salt", salt=bytes(15))
    data = encode(content)
    tag = hmac.new(bytes(15), data, hashlib.sha256).digest()
    return data, encode(FrankingAAD(tag))


def _not_a_payload(a: Client, chat: str) -> tuple[bytes, bytes]:
    franked = frank_content(content_of(a, chat, "x", media_type=b"text/plain", body=b"raw text"))
    return franked.application_data, franked.authenticated_data


@pytest.mark.parametrize(
    ("craft", "counted"),
    [
        (_bad_tag, "FrankingTagMismatch"),
        (_spoofed_sender, "SenderMismatch"),
        (_other_group, "GroupMismatch"),
        (_short_salt, "InvalidSalt"),
        (_not_a_payload, "DecodeError"),
    ],
    ids=["tag-mismatch", "spoofed-sender", "other-group", "short-salt", "not-a-payload"],
)
async def test_a_sender_cannot_make_a_displayed_unreportable_message(
    tmp_path: Path, craft: Callable[[Client, str], tuple[bytes, bytes]], counted: str
) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        await send_raw(alice, chat, *craft(alice, chat))  # the server cannot tell: accepted
        await bob.sync()
        assert await bob.history(chat) == []
        failed = of_type(take_events(bob), DeliveryFailed)
        assert [f.reason for f in failed] == [FailureReason.INVALID_FRANK]
        assert counted in failed[0].detail
        assert await bob.hidden_messages() == {counted: 1}
        # The conversation still works.
        await alice.send_text(chat, "honest")
        await bob.sync()
        assert [m.text for m in await bob.history(chat)] == ["honest"]


def _flip_hmac(frank: bytes | None) -> bytes | None:
    assert frank is not None
    f = decode(ServerFrank, frank)
    return encode(
        dataclasses.replace(f, server_frank=bytes([f.server_frank[0] ^ 1]) + f.server_frank[1:])
    )


def _flip_signature(frank: bytes | None) -> bytes | None:
    assert frank is not None
    f = decode(ServerFrank, frank)
    sig = f.franking_integrity_signature
    return encode(
        dataclasses.replace(f, franking_integrity_signature=sig[:-1] + bytes([sig[-1] ^ 1]))
    )


def _later_time(frank: bytes | None) -> bytes | None:
    assert frank is not None
    f = decode(ServerFrank, frank)
    return encode(dataclasses.replace(f, accepted_at_ms=f.accepted_at_ms + 1))


def _dropped(frank: bytes | None) -> bytes | None:
    return None


def _garbage(frank: bytes | None) -> bytes | None:
    return b"\x00\x01"


@pytest.mark.parametrize(
    ("tamper", "counted"),
    [
        (_flip_hmac, "InvalidFrankSignature"),
        (_flip_signature, "InvalidFrankSignature"),
        (_later_time, "InvalidFrankSignature"),
        (_dropped, "DecodeError"),
        (_garbage, "DecodeError"),
    ],
    ids=["server-frank", "signature", "time", "missing", "garbage"],
)
async def test_a_tampered_frank_hides_the_message_and_is_counted(
    tmp_path: Path, tamper: Callable[[bytes | None], bytes | None], counted: str
) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        real_fetch = bob._transport.fetch

        async def fetch(after: int = 0, limit: int = 100) -> MessagePage:
            page = await real_fetch(after=after, limit=limit)
            return MessagePage(
                [
                    QueuedMessage(m.seq, m.data, m.received_at, tamper(m.frank))
                    if m.frank is not None
                    else m
                    for m in page.messages
                ],
                page.more,
            )

        bob._transport.fetch = fetch  # type: ignore[method-assign]
        await alice.send_text(chat, canary())
        await bob.sync()
        assert await bob.history(chat) == []
        assert [f.reason for f in of_type(take_events(bob), DeliveryFailed)] == [
            FailureReason.INVALID_FRANK
        ]
        assert await bob.hidden_messages() == {counted: 1}


async def test_a_frank_moved_to_another_message_is_refused(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        await alice.send_text(chat, "first")
        await alice.send_text(chat, "second")
        real_fetch = bob._transport.fetch

        async def fetch(after: int = 0, limit: int = 100) -> MessagePage:
            page = await real_fetch(after=after, limit=limit)
            first, second = page.messages
            swapped = [dataclasses.replace(first, frank=second.frank), second]
            return MessagePage(swapped, page.more)

        bob._transport.fetch = fetch  # type: ignore[method-assign]
        await bob.sync()
        assert [m.text for m in await bob.history(chat)] == ["second"]
        assert await bob.hidden_messages() == {"InvalidFrankSignature": 1}


# --- reports ------------------------------------------------------------------------------------


async def test_report_reveals_exactly_the_reported_message(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        reported, other = canary(), canary()
        await alice.send_text(chat, reported)
        await alice.send_text(chat, other)
        await bob.sync()
        first, _ = await bob.history(chat)

        (receipt,) = await bob.report(first.message_id, "harassment", note="please look")
        assert receipt.sender == "alice" and receipt.attachments == ()

        (record,) = await net.ctx.storage.list_reports(0, 10)
        assert record.report_id == receipt.report_id
        assert (record.sender_username, record.sender_device_id) == ("alice", alice.device_id)
        assert (record.reporter_username, record.reporter_device_id) == ("bob", bob.device_id)
        assert record.reason == "harassment" and record.group_id == bytes.fromhex(chat)
        report = decode(AbuseReport, record.report)
        assert report.reason is ReportReason.harassment and report.note == "please look"
        payload = decode(Payload, decode(FrankedContent, report.franked_content).body)
        assert _text(payload) == reported

        # The reported plaintext is now on the server (the reporter chose that); the other
        # message's is not, anywhere under the data directory.
        hits = scan(net.config.data_dir, [reported.encode(), other.encode()])
        assert [needle for _, needle in hits if needle == other.encode()] == []
        assert any(needle == reported.encode() for _, needle in hits)


async def test_report_of_a_file_checks_the_attachment(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        data = canary().encode() * 100
        sent = await alice.send_file(chat, data, name="evidence.txt")
        await bob.sync()
        (received,) = await bob.history(chat)
        assert await bob.download(received) == data
        row = await bob._tx(lambda tx: tx.get_message(received.local_id))
        assert row is not None and row.franking is not None
        content = decode(FrankedContent, decode(ReceivedFrank, row.franking).application_data)
        # The franked content commits to the attachment's key and plaintext hash (FRANK-8).
        assert sent.file is not None and content.attachments == (sent.file.descriptor,)
        assert content.attachments[0].plaintext_sha256 == hashlib.sha256(data).digest()

        (receipt,) = await bob.report(received.message_id, "other")
        assert receipt.attachments == ("ok",)


async def test_forged_reports_are_rejected(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        await alice.send_text(chat, "what alice said")
        await alice.send_text(chat, "another thing")
        await bob.sync()
        said, other = await bob.history(chat)
        rows = [await bob._tx(lambda tx, m=m: tx.get_message(m.local_id)) for m in (said, other)]
        kept = [decode(ReceivedFrank, r.franking) for r in rows if r is not None and r.franking]
        frank = kept[0].frank

        # Bob makes alice "say" something else: new content, a correct new tag, her frank.
        forged_content = frank_content(content_of(alice, chat, "something alice never said"))
        edited = AbuseReport(ReportReason.threat, "", forged_content.application_data, frank)
        # Bob moves the frank of one message onto another.
        moved = AbuseReport(ReportReason.threat, "", kept[1].application_data, frank)
        # Bob invents a frank (he has no server key).
        invented = AbuseReport(
            ReportReason.threat,
            "",
            kept[0].application_data,
            dataclasses.replace(frank, server_frank=bytes(32)),
        )
        for forged in (edited, moved, invented):
            with pytest.raises(InvalidRequest) as refused:
                await bob._transport.report(encode(forged))
            assert refused.value.code == "invalid_report"
        with pytest.raises(InvalidRequest) as garbage:
            await bob._transport.report(b"\x01\x02\x03")
        assert garbage.value.code == "invalid_report"
        assert await net.ctx.storage.list_reports(0, 10) == []


async def test_reports_fail_after_the_franking_key_is_deleted(tmp_path: Path) -> None:
    """docs/franking.md §3: a message stays reportable until its key's retirement plus the
    retention; then the key is deleted and a report fails with ``report_expired``."""
    clock = Clock()
    retention = 3600
    async with safety_network(tmp_path, server_clock=clock, franking_retention=retention) as net:
        alice, bob, chat = await pair(net)
        await alice.send_text(chat, "old")
        await bob.sync()
        (old,) = await bob.history(chat)
        assert net.ctx.franking.keyring.current.key_id == 0

        # Rotated: a new key stamps, the old one still verifies reports.
        assert await net.ctx.franking.rotate() == 1
        await alice.send_text(chat, "new")
        await bob.sync()
        _, new = await bob.history(chat)
        assert (await bob.report(old.message_id, "spam"))[0].sender == "alice"

        # The retention ends: the sweep deletes key 0; the old message can no longer be
        # reported, the new one can. Both stay readable on bob's device.
        clock.advance(retention + 1)
        assert await net.ctx.franking.maintain() == [0]
        with pytest.raises(InvalidRequest) as expired:
            await bob.report(old.message_id, "spam")
        assert expired.value.code == "report_expired"
        assert (await bob.report(new.message_id, "spam"))[0].sender == "alice"
        assert [m.text for m in await bob.history(chat)] == ["old", "new"]

        # The keys survive a restart of the server (they live in the database).
        ring = net.ctx.franking.keyring
        await net.ctx.franking.load()
        assert [k.key_id for k in net.ctx.franking.keyring.keys] == [k.key_id for k in ring.keys]


async def test_the_server_rotates_its_franking_key_on_schedule(tmp_path: Path) -> None:
    clock = Clock()
    async with safety_network(tmp_path, server_clock=clock, franking_rotation=600) as net:
        franking = net.ctx.franking
        assert await franking.maintain() == [] and franking.keyring.current.key_id == 0
        clock.advance(601)
        await franking.maintain()
        assert franking.keyring.current.key_id == 1
        assert franking.verifiable_until_ms(0) == int(clock.now * 1000) + 30 * 24 * 3600 * 1000
        # A second process rotating at the same moment does not rotate twice.
        assert await net.ctx.storage.rotate_franking_key(0, franking.keyring.keys[0]) is False


async def test_an_invisible_salamander_attachment_cannot_show_what_a_report_hides(
    tmp_path: Path,
) -> None:
    """One AES-GCM ciphertext that opens under two keys to two plaintexts
    (tests/franking/test_franking.py builds it). Whatever the sender commits to in the franked
    content is exactly what the receiver can see and what a report reveals; the other opening
    is refused (FRANK-8)."""
    from doorless.franking import AttachmentDescriptor, AttachmentMismatch
    from doorless.wire.payload import FileBody, file_payload
    from franking.test_franking import K_ABUSIVE, K_BENIGN, NONCE, build_salamander

    ct, benign, abusive = build_salamander(
        K_BENIGN, K_ABUSIVE, NONCE, b"a cat".ljust(48, b"."), b"ABUSE".ljust(48, b"!")
    )
    async with safety_network(tmp_path) as net:
        alice, bob, chat = await pair(net)
        uploaded = await alice._transport.upload_attachment(ct)

        def descriptor(key: bytes, shown: bytes) -> AttachmentDescriptor:
            return AttachmentDescriptor(
                locator=uploaded.attachment_id.encode(),
                media_type=b"image/png",
                key=key,
                nonce=NONCE,
                ciphertext_sha256=hashlib.sha256(ct).digest(),
                plaintext_sha256=hashlib.sha256(shown).digest(),
                size=len(shown),
            )

        gid = bytes.fromhex(chat)
        # 1. Commits to the benign opening but hands out the abusive key: refused on download.
        await alice._send_payload(
            gid, file_payload(FileBody("cat.png", descriptor(K_ABUSIVE, benign)), 1)
        )
        # 2. Commits to the benign opening with its key: shown, and the report shows the same.
        await alice._send_payload(
            gid, file_payload(FileBody("cat.png", descriptor(K_BENIGN, benign)), 2)
        )
        # 3. Commits to the abusive opening: shown, and a report reveals exactly that.
        await alice._send_payload(
            gid, file_payload(FileBody("cat.png", descriptor(K_ABUSIVE, abusive)), 3)
        )
        await bob.sync()
        mixed, honest, open_abuse = await bob.history(chat)
        with pytest.raises(AttachmentMismatch):
            await bob.download(mixed)
        assert await bob.download(honest) == benign
        (receipt,) = await bob.report(honest.message_id, "other")
        assert receipt.attachments == ("ok",)
        assert await bob.download(open_abuse) == abusive
        (receipt,) = await bob.report(open_abuse.message_id, "sexual_content")
        assert receipt.attachments == ("ok",)
        (record,) = [
            r for r in await net.ctx.storage.list_reports(0, 10) if r.report_id == receipt.report_id
        ]
        revealed = decode(FrankedContent, decode(AbuseReport, record.report).franked_content)
        assert revealed.attachments[0].plaintext_sha256 == hashlib.sha256(abusive).digest()
        # The server's own check of the mixed one (it opens the blob with the committed key).
        (receipt,) = await bob.report(mixed.message_id, "other")
        assert receipt.attachments == ("mismatch",)
