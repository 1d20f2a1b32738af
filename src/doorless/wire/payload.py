"""The application payload: what travels inside an MLS application message.

Every MLS application message of Doorless carries one encoded `Payload` as its
``application_data`` (RFC 9420 §6.3 encrypts it; the server sees none of it)::

    enum {
        text(1), file(2), content(3), call_signal(4), history(5), upgrade(6), (65535)
    } PayloadKind;

    struct {
        uint8 version;              // 1 or 2
        opaque message_id[16];      // random; the same on every device, used to drop duplicates
        uint64 sent_at_ms;          // the sender's clock, informational
        PayloadKind kind;
        opaque body<V>;             // by kind: see below
        select (version) {
            case 1: struct {};
            case 2: opaque checkpoint<V>;   // checkpoint gossip, see below
        };
    } Payload;

    // kind = text: body is the UTF-8 text.
    // kind = file:
    struct {
        opaque name<V>;                     // UTF-8 file name (no folders)
        AttachmentDescriptor attachment;    // doorless.franking: locator = attachment id,
                                            // media_type = MIME type, key, nonce, hashes, size
    } FileBody;
    // kind = content: body is an encoded MIMI content container (application/mimi-content,
    // draft-ietf-mimi-content-08; doorless.wire.rich maps it). Every new message is one;
    // kinds text and file are still read (messages sent by older versions).
    // kind = call_signal: body is a CallSignal (doorless.wire.call_signal), never stored.
    // kind = history: a history handoff to a newly linked device (doorless.client.handoff).
    // kind = upgrade: an UpgradeNotice (doorless.wire.upgrade), never a stored message.

Checkpoint gossip (version 2, docs/key-transparency.md): ``checkpoint`` is the signed note of
the latest key-transparency log head the sender verified (1..8192 bytes), so that the receiver
can check that both were shown the same log. A payload without one is still written as
version 1, and version 1 payloads stay readable (``checkpoint`` empty).

An unknown ``kind`` decodes (its raw number is kept) so that a newer client's messages are
reported as unsupported rather than as garbage.

Franking (``docs/franking.md``): the MLS ``application_data`` is not the `Payload` itself but a
`doorless.franking.FrankedContent` wrapping it (`frank_payload`): a fresh 16-byte salt, the
sender's identity (as in its MLS credential), the group id, ``sent_at_ms``, the media type
``application/vnd.doorless.payload``, the encoded `Payload` as body, and for a file its
`AttachmentDescriptor` (so the franking tag commits to the attachment's key and plaintext
hash). The franking tag goes into the MLS ``authenticated_data``. `payload_of` takes the
payload back out of verified franked content and checks that the two agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer, decode, encode
from doorless.content import MimiContent
from doorless.content import decode as decode_content
from doorless.errors import ConfigurationError, DecodeError
from doorless.franking import (
    AttachmentDescriptor,
    FrankedContent,
    FrankedMessage,
    SenderIdentity,
    frank_content,
)
from doorless.wire.rich import attachments_of

PAYLOAD_VERSION = 2  # the newest; 1 (no checkpoint) is still read and written
MAX_CHECKPOINT_BYTES = 8192
MESSAGE_ID_LENGTH = 16
MAX_TEXT_BYTES = 256 * 1024
# The largest MIMI container read or sent: a text of MAX_TEXT_BYTES, its mention links and the
# container's own fields.
MAX_CONTENT_BYTES = MAX_TEXT_BYTES + 16 * 1024
MAX_FILE_NAME_BYTES = 255
_MAX_UINT64 = 2**64 - 1


class PayloadKind(IntEnum):
    text = 1
    file = 2
    content = 3  # a MIMI content container (doorless.wire.rich)
    call_signal = 4  # body: a CallSignal (doorless.wire.call_signal), never a stored message
    history = 5  # a history handoff to a newly linked device (doorless.client.handoff)
    upgrade = 6  # body: an UpgradeNotice (doorless.wire.upgrade): the conversation's successor


def payload_kind_of(value: int) -> PayloadKind | int:
    """A known `PayloadKind`, or the raw number (a newer client's kind)."""
    try:
        return PayloadKind(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True, repr=False)
class Payload:
    """See the module docstring. ``body`` is plaintext: it never appears in a repr."""

    message_id: bytes
    sent_at_ms: int
    kind: PayloadKind | int
    body: bytes
    checkpoint: bytes = b""  # the sender's latest verified log checkpoint (empty: none)

    def __post_init__(self) -> None:
        if len(self.message_id) != MESSAGE_ID_LENGTH:
            raise ConfigurationError(f"a message id is {MESSAGE_ID_LENGTH} bytes")
        if not 0 <= self.sent_at_ms <= _MAX_UINT64:
            raise ConfigurationError("sent_at_ms is out of range")
        if not 0 <= int(self.kind) <= 0xFFFF:
            raise ConfigurationError("payload kind is out of range")
        if len(self.checkpoint) > MAX_CHECKPOINT_BYTES:
            raise ConfigurationError(
                f"a gossiped checkpoint is at most {MAX_CHECKPOINT_BYTES} bytes"
            )

    def __repr__(self) -> str:
        return (
            f"Payload(message_id={self.message_id.hex()}, kind={self.kind!r}, "
            f"body=<{len(self.body)} bytes>)"
        )

    def push(self, w: Writer) -> None:
        w.push_uint8(2 if self.checkpoint else 1)
        w.push_bytes(self.message_id)
        w.push_uint64(self.sent_at_ms)
        w.push_uint16(self.kind)
        w.push_opaque(self.body)
        if self.checkpoint:
            w.push_opaque(self.checkpoint)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version not in (1, 2):
            raise DecodeError(f"unknown payload version {version}")
        message_id = r.pull_bytes(MESSAGE_ID_LENGTH)
        sent_at_ms = r.pull_uint64()
        kind = payload_kind_of(r.pull_uint16())
        body = r.pull_opaque()
        checkpoint = r.pull_opaque() if version == 2 else b""
        if version == 2 and not 0 < len(checkpoint) <= MAX_CHECKPOINT_BYTES:
            raise DecodeError(f"a gossiped checkpoint is 1..{MAX_CHECKPOINT_BYTES} bytes")
        return cls(message_id, sent_at_ms, kind, body, checkpoint)


@dataclass(frozen=True, slots=True)
class FileBody:
    """The body of a ``file`` payload (see the module docstring)."""

    name: str
    attachment: AttachmentDescriptor

    def __post_init__(self) -> None:
        check_file_name(self.name)

    def push(self, w: Writer) -> None:
        w.push_opaque(self.name.encode("utf-8"))
        self.attachment.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        name = _utf8(r.pull_opaque(), "file name")
        attachment = AttachmentDescriptor.pull(r)
        try:
            return cls(name, attachment)
        except ConfigurationError as e:
            raise DecodeError(str(e)) from None


def check_file_name(name: str) -> None:
    """A file name is 1..255 UTF-8 bytes, a single path component, no control characters."""
    raw = name.encode("utf-8", "surrogatepass")
    if not 0 < len(raw) <= MAX_FILE_NAME_BYTES:
        raise ConfigurationError(f"a file name is 1..{MAX_FILE_NAME_BYTES} bytes")
    if name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ConfigurationError("a file name is a single printable path component")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


def new_message_id() -> bytes:
    return os.urandom(MESSAGE_ID_LENGTH)


def text_payload(text: str, sent_at_ms: int, message_id: bytes | None = None) -> Payload:
    body = text.encode("utf-8")
    if len(body) > MAX_TEXT_BYTES:
        raise ConfigurationError(f"a text message is at most {MAX_TEXT_BYTES} bytes")
    return Payload(message_id or new_message_id(), sent_at_ms, PayloadKind.text, body)


def file_payload(file: FileBody, sent_at_ms: int, message_id: bytes | None = None) -> Payload:
    return Payload(message_id or new_message_id(), sent_at_ms, PayloadKind.file, encode(file))


def content_payload(
    content: MimiContent, sent_at_ms: int, message_id: bytes | None = None
) -> Payload:
    body = content.encode()
    if len(body) > MAX_CONTENT_BYTES:
        raise ConfigurationError(f"a message is at most {MAX_CONTENT_BYTES} bytes encoded")
    return Payload(message_id or new_message_id(), sent_at_ms, PayloadKind.content, body)


def content_of(payload: Payload) -> MimiContent:
    """The MIMI container of a ``content`` payload; `DecodeError` / `ValidationError` if
    malformed."""
    return decode_content(payload.body, max_size=MAX_CONTENT_BYTES)


def text_of(payload: Payload) -> str:
    """The text of a ``text`` payload; `DecodeError` if it is not UTF-8."""
    return _utf8(payload.body, "text")


def file_of(payload: Payload) -> FileBody:
    """The `FileBody` of a ``file`` payload; `DecodeError` if malformed."""
    return decode(FileBody, payload.body)


# --- franking --------------------------------------------------------------------------------

PAYLOAD_MEDIA_TYPE = b"application/vnd.doorless.payload"


def _committed_attachments(payload: Payload) -> tuple[AttachmentDescriptor, ...]:
    if payload.kind == PayloadKind.content:
        return attachments_of(content_of(payload))
    return (file_of(payload).attachment,) if payload.kind == PayloadKind.file else ()


def frank_payload(
    payload: Payload, *, sender: SenderIdentity, group_id: bytes, salt: bytes
) -> FrankedMessage:
    """The MLS application data and authenticated data of ``payload`` (``salt``: 16 fresh
    random bytes)."""
    content = FrankedContent(
        salt=salt,
        sender=sender,
        group_id=group_id,
        sent_at_ms=payload.sent_at_ms,
        media_type=PAYLOAD_MEDIA_TYPE,
        body=encode(payload),
        attachments=_committed_attachments(payload),
    )
    return frank_content(content)


def payload_of(content: FrankedContent) -> Payload:
    """The `Payload` inside verified franked content; `DecodeError` if it is not a Doorless
    payload or disagrees with what the franked content commits to (time, attachments)."""
    if content.media_type != PAYLOAD_MEDIA_TYPE:
        raise DecodeError("franked content of an unknown media type")
    payload = decode(Payload, content.body)
    if payload.sent_at_ms != content.sent_at_ms:
        raise DecodeError("the payload's time differs from the franked content's")
    known = isinstance(payload.kind, PayloadKind)
    if known and content.attachments != _committed_attachments(payload):
        raise DecodeError("the payload's attachments differ from the franked ones")
    return payload


__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_CONTENT_BYTES",
    "MAX_TEXT_BYTES",
    "MESSAGE_ID_LENGTH",
    "PAYLOAD_MEDIA_TYPE",
    "PAYLOAD_VERSION",
    "FileBody",
    "Payload",
    "PayloadKind",
    "check_file_name",
    "content_of",
    "content_payload",
    "file_of",
    "file_payload",
    "frank_payload",
    "new_message_id",
    "payload_kind_of",
    "payload_of",
    "text_of",
    "text_payload",
]
