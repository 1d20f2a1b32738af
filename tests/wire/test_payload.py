"""The client's own encodings: Payload, FileBody, ConversationInfo, outbox records.

Each decoder: arbitrary bytes decode or raise DecodeError (nothing else); valid values
round-trip byte for byte; known encodings are pinned byte for byte."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.client.conversations import (
    CONVERSATION_INFO_EXTENSION,
    ConversationInfo,
    check_binding,
    conversation_info,
    device_ref_of,
    make_credential,
    with_info,
)
from doorless.client.events import ConversationKind, DeviceRef
from doorless.client.records import OutgoingCommit, OutgoingMessage
from doorless.client.transport import DeviceIdentity
from doorless.codec import Writer, decode, encode
from doorless.errors import ConfigurationError, DecodeError, ValidationError
from doorless.franking import AttachmentDescriptor, seal_attachment
from doorless.mls.credential import BasicCredential, X509Credential
from doorless.mls.extensions import Extension
from doorless.wire.payload import (
    MAX_CHECKPOINT_BYTES,
    MAX_TEXT_BYTES,
    FileBody,
    Payload,
    PayloadKind,
    check_file_name,
    file_of,
    file_payload,
    text_of,
    text_payload,
)

DECODERS: dict[str, Any] = {
    "Payload": Payload,
    "FileBody": FileBody,
    "ConversationInfo": ConversationInfo,
    "OutgoingMessage": OutgoingMessage,
    "OutgoingCommit": OutgoingCommit,
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_decode_error(name: str, data: bytes) -> None:
    try:
        value = decode(DECODERS[name], data)
    except DecodeError:
        return
    assert encode(value) == data  # whatever decodes is canonical


def descriptor(**overrides: Any) -> AttachmentDescriptor:
    d, _ = seal_attachment(b"hello", key=b"k" * 32, nonce=b"n" * 12, locator=b"a" * 32)
    return d if not overrides else AttachmentDescriptor(**{**_fields(d), **overrides})


def _fields(d: AttachmentDescriptor) -> dict[str, Any]:
    return {f: getattr(d, f) for f in AttachmentDescriptor.__dataclass_fields__}


# --- Payload -------------------------------------------------------------------------------


def test_payload_encoding_is_pinned() -> None:
    p = Payload(bytes(range(16)), 0x0102030405060708, PayloadKind.text, b"hi")
    assert encode(p).hex() == (
        "01"  # version
        "000102030405060708090a0b0c0d0e0f"  # message_id[16]
        "0102030405060708"  # sent_at_ms
        "0001"  # kind = text
        "02" + b"hi".hex()  # body<V>
    )


def test_payload_with_a_checkpoint_is_version_2_and_pinned() -> None:
    """Checkpoint gossip (docs/key-transparency.md): the sender's verified log head."""
    p = Payload(bytes(range(16)), 0x0102030405060708, PayloadKind.text, b"hi", b"cp")
    assert encode(p).hex() == (
        "02"  # version
        "000102030405060708090a0b0c0d0e0f"  # message_id[16]
        "0102030405060708"  # sent_at_ms
        "0001"  # kind = text
        "02"
        + b"hi".hex()  # body<V>
        + "02"
        + b"cp".hex()  # checkpoint<V>
    )
    assert decode(Payload, encode(p)) == p
    # A version-1 payload (an older sender) is still read, without a checkpoint.
    old = decode(Payload, bytes.fromhex("01" + "00" * 16 + "00" * 8 + "0001" + "00"))
    assert old.checkpoint == b""


def test_payload_checkpoint_size_is_bounded() -> None:
    with pytest.raises(ConfigurationError):
        Payload(bytes(16), 0, PayloadKind.text, b"", bytes(MAX_CHECKPOINT_BYTES + 1))
    w = Writer()
    w.push_uint8(2)
    w.push_bytes(bytes(16))
    w.push_uint64(0)
    w.push_uint16(1)
    w.push_opaque(b"")
    w.push_opaque(bytes(MAX_CHECKPOINT_BYTES + 1))
    with pytest.raises(DecodeError):
        decode(Payload, w.getvalue())


@given(
    message_id=st.binary(min_size=16, max_size=16),
    sent_at=st.integers(0, 2**64 - 1),
    kind=st.integers(0, 0xFFFF),
    body=st.binary(max_size=200),
)
def test_payload_round_trips(message_id: bytes, sent_at: int, kind: int, body: bytes) -> None:
    p = Payload(message_id, sent_at, kind, body)
    data = encode(p)
    again = decode(Payload, data)
    assert again == p and encode(again) == data
    assert isinstance(again.kind, PayloadKind) == (kind in (1, 2))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x03" + bytes(16) + bytes(8) + b"\x00\x01\x00", id="version-3"),
        pytest.param(
            b"\x02" + bytes(16) + bytes(8) + b"\x00\x01\x00", id="version-2-no-checkpoint"
        ),
        pytest.param(
            b"\x02" + bytes(16) + bytes(8) + b"\x00\x01\x00\x00", id="version-2-empty-checkpoint"
        ),
        pytest.param(b"\x01" + bytes(15), id="short-message-id"),
        pytest.param(b"\x01" + bytes(16) + bytes(8) + b"\x00\x01\x05ab", id="body-too-short"),
        pytest.param(b"\x01" + bytes(16) + bytes(8) + b"\x00\x01\x00\x00", id="trailing-byte"),
    ],
)
def test_payload_rejects(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(Payload, data)


def test_payload_checks_its_fields() -> None:
    with pytest.raises(ConfigurationError):
        Payload(b"short", 0, PayloadKind.text, b"")
    with pytest.raises(ConfigurationError):
        Payload(bytes(16), -1, PayloadKind.text, b"")
    with pytest.raises(ConfigurationError):
        Payload(bytes(16), 0, 0x10000, b"")


def test_payload_repr_hides_the_body() -> None:
    p = text_payload("secret canary", 1)
    assert "canary" not in repr(p) and p.message_id.hex() in repr(p)


def test_text_payload() -> None:
    p = text_payload("héllo", 5)
    assert (p.kind, p.sent_at_ms, text_of(p)) == (PayloadKind.text, 5, "héllo")
    assert len(p.message_id) == 16 and text_payload("x", 5).message_id != p.message_id
    with pytest.raises(ConfigurationError):
        text_payload("x" * (MAX_TEXT_BYTES + 1), 0)
    with pytest.raises(DecodeError):
        text_of(Payload(bytes(16), 0, PayloadKind.text, b"\xff"))


# --- FileBody ------------------------------------------------------------------------------


def test_file_body_round_trips() -> None:
    body = FileBody("report.pdf", descriptor())
    data = encode(body)
    assert data[: 1 + len("report.pdf")] == b"\x0areport.pdf"
    assert decode(FileBody, data) == body
    p = file_payload(body, 7)
    assert p.kind is PayloadKind.file and file_of(p) == body


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "line\nbreak", "x" * 256, "é" * 128]
)
def test_bad_file_names(name: str) -> None:
    with pytest.raises(ConfigurationError):
        check_file_name(name)
    with pytest.raises(ConfigurationError):
        FileBody(name, descriptor())
    w = Writer()  # the same name off the wire
    w.push_opaque(name.encode("utf-8"))
    descriptor().push(w)
    with pytest.raises(DecodeError):
        decode(FileBody, w.getvalue())


def test_file_body_name_must_be_utf8() -> None:
    with pytest.raises(DecodeError):
        decode(FileBody, b"\x01\xff" + encode(descriptor()))


@pytest.mark.parametrize("name", ["a", "report.pdf", "naïve résumé.txt", "x" * 255])
def test_good_file_names(name: str) -> None:
    check_file_name(name)


# --- ConversationInfo ------------------------------------------------------------------------


def test_conversation_info_encoding_is_pinned() -> None:
    assert encode(ConversationInfo(ConversationKind.GROUP, "ab")).hex() == "0102026162"
    assert encode(ConversationInfo(ConversationKind.DIRECT, "")).hex() == "010100"


@given(
    kind=st.sampled_from(list(ConversationKind)),
    name=st.text(max_size=60).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= 256),
)
def test_conversation_info_round_trips(kind: ConversationKind, name: str) -> None:
    try:
        info = ConversationInfo(kind, name)
        data = encode(info)
    except UnicodeEncodeError:
        return  # lone surrogates cannot be sent
    assert decode(ConversationInfo, data) == info


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("020100", id="version-2"),
        pytest.param("010300", id="unknown-kind"),
        pytest.param("010201ff", id="name-not-utf8"),
        pytest.param("010200" + "00", id="trailing-byte"),
    ],
)
def test_conversation_info_rejects(data: str) -> None:
    with pytest.raises(DecodeError):
        decode(ConversationInfo, bytes.fromhex(data))


def test_conversation_info_name_limit() -> None:
    ConversationInfo(ConversationKind.GROUP, "x" * 256)
    with pytest.raises(ConfigurationError):
        ConversationInfo(ConversationKind.GROUP, "x" * 257)


def test_with_info_replaces_only_the_info() -> None:
    other = Extension(0xF0AA, b"keep")
    old = ConversationInfo(ConversationKind.GROUP, "old").extension()
    new_info = ConversationInfo(ConversationKind.GROUP, "new")
    exts = with_info((other, old), new_info)
    assert exts == (other, new_info.extension())
    assert exts[1].extension_type == CONVERSATION_INFO_EXTENSION


def test_conversation_info_of_a_group_without_one_is_an_unnamed_group() -> None:
    class FakeGroup:
        extensions = (Extension(CONVERSATION_INFO_EXTENSION, b"\x09garbage"),)

    info = conversation_info(FakeGroup())  # type: ignore[arg-type]
    assert info == ConversationInfo(ConversationKind.GROUP, "")


# --- identities ----------------------------------------------------------------------------


def test_credential_round_trip_and_binding() -> None:
    device = DeviceIdentity.generate()
    cred = make_credential("alice", device.device_id)
    assert device_ref_of(cred) == DeviceRef("alice", device.device_id)

    class Leaf:
        credential = cred
        signature_key = device.public_key

    assert check_binding(Leaf()) == DeviceRef("alice", device.device_id)  # type: ignore[arg-type]
    Leaf.signature_key = DeviceIdentity.generate().public_key
    with pytest.raises(ValidationError):
        check_binding(Leaf())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(X509Credential((b"cert",)), id="x509"),
        pytest.param(BasicCredential(b"alice"), id="not-an-identity"),
        pytest.param(BasicCredential(b"\x05ALICE\x20" + b"0" * 32), id="bad-username"),
        pytest.param(BasicCredential(b"\x05alice\x04abcd"), id="bad-device-id"),
        pytest.param(BasicCredential(b"\x05al\xffce\x20" + b"0" * 32), id="not-ascii"),
    ],
)
def test_credentials_that_are_no_doorless_identity(credential: Any) -> None:
    with pytest.raises(ValidationError):
        device_ref_of(credential)


# --- outbox records ------------------------------------------------------------------------

DEVICE = "0123456789abcdef0123456789abcdef"


def test_outgoing_message_round_trips() -> None:
    record = OutgoingMessage("msg-id_1", b"ciphertext", (DEVICE, "f" * 32))
    assert decode(OutgoingMessage, encode(record)) == record


@pytest.mark.parametrize("welcome", [None, b"welcome"])
def test_outgoing_commit_round_trips(welcome: bytes | None) -> None:
    record = OutgoingCommit("id12345678", b"commit", welcome, (DEVICE,), (), os.urandom(40))
    assert decode(OutgoingCommit, encode(record)) == record
    assert "pending_state" not in repr(record)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b"\x08abcdefgh" + b"\x01x" + b"\x21\x20" + DEVICE.upper().encode(), id="bad-device"
        ),
        pytest.param(b"\x00" + b"\x01x" + b"\x00", id="empty-message-id"),
        pytest.param(b"\x02\xff\xfe" + b"\x01x" + b"\x00", id="message-id-not-ascii"),
    ],
)
def test_outgoing_message_rejects(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(OutgoingMessage, data)
