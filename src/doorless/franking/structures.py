"""The franking wire structures (``docs/franking.md`` §1, "Wire structures").

Owns the encodings that travel or get signed: `SenderIdentity`, `AttachmentDescriptor`,
`FrankedContent` (the MLS application data), `SafeAADItem` / `FrankingAAD` (the MLS
authenticated data, draft-ietf-mls-extensions §4.9), `ServerFrankingContext`,
`FrankingIntegrityTBS` and `ServerFrank` (what the server vouches for and signs, MIMI
§Message Franking), `ReportReason` and `AbuseReport` (MIMI §Report abuse). Only the format
lives here, with range and length checks; the computations are in the sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Self

from doorless.codec import Reader, Writer, decode, encode, push_struct
from doorless.errors import ConfigurationError, DecodeError
from doorless.franking.constants import (
    ATTACHMENT_KEY_LENGTH,
    ATTACHMENT_NONCE_LENGTH,
    FRANK_AAD_COMPONENT_ID,
    FRANKED_CONTENT_VERSION,
    MAX_UINT32,
    MAX_UINT64,
    SHA256_LENGTH,
    TAG_LENGTH,
    check_length,
    check_uint,
)


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """A sending device: the account and the device, as the MLS credential and the server's
    session name them::

        struct {
          opaque user_id<V>;
          opaque device_id<V>;
        } SenderIdentity;

    The caller maps the MLS leaf credential to a `SenderIdentity` (after checking the leaf
    against the member's KT-verified device list). `credential_identity` is a suggested
    encoding for a basic credential's ``identity`` that makes the mapping a `decode`.
    """

    user_id: bytes
    device_id: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.user_id)
        w.push_opaque(self.device_id)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_opaque())

    def credential_identity(self) -> bytes:
        return encode(self)

    @classmethod
    def from_credential_identity(cls, identity: bytes) -> Self:
        """Raises `DecodeError` when ``identity`` is not an encoded `SenderIdentity`."""
        return decode(cls, identity)


@dataclass(frozen=True, slots=True, repr=False)
class AttachmentDescriptor:
    """An encrypted attachment, committed inside the franked content::

        struct {
          opaque locator<V>;             // where the ciphertext is stored
          opaque media_type<V>;
          opaque key[32];                // AES-256-GCM key, fresh per attachment
          opaque nonce[12];
          opaque ciphertext_sha256[32];
          opaque plaintext_sha256[32];
          uint64 size;                   // plaintext length in bytes
        } AttachmentDescriptor;

    AES-GCM does not commit to its key: one ciphertext can open, with a valid tag, to two
    different plaintexts under two keys ("invisible salamanders", DGRW18). The franked content
    commits to the key *and* to the plaintext hash, and `open_attachment` checks the plaintext
    hash after decryption, so what a receiver is shown is exactly what a report reveals.
    """

    locator: bytes
    media_type: bytes
    key: bytes
    nonce: bytes
    ciphertext_sha256: bytes
    plaintext_sha256: bytes
    size: int

    def __post_init__(self) -> None:
        check_length("attachment key", self.key, ATTACHMENT_KEY_LENGTH)
        check_length("attachment nonce", self.nonce, ATTACHMENT_NONCE_LENGTH)
        check_length("ciphertext_sha256", self.ciphertext_sha256, SHA256_LENGTH)
        check_length("plaintext_sha256", self.plaintext_sha256, SHA256_LENGTH)
        check_uint("size", self.size, MAX_UINT64)

    def __repr__(self) -> str:
        return (
            f"AttachmentDescriptor(locator={self.locator!r}, media_type={self.media_type!r}, "
            f"key=***, plaintext_sha256={self.plaintext_sha256.hex()}, size={self.size})"
        )

    def push(self, w: Writer) -> None:
        w.push_opaque(self.locator)
        w.push_opaque(self.media_type)
        w.push_bytes(self.key)
        w.push_bytes(self.nonce)
        w.push_bytes(self.ciphertext_sha256)
        w.push_bytes(self.plaintext_sha256)
        w.push_uint64(self.size)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            locator=r.pull_opaque(),
            media_type=r.pull_opaque(),
            key=r.pull_bytes(ATTACHMENT_KEY_LENGTH),
            nonce=r.pull_bytes(ATTACHMENT_NONCE_LENGTH),
            ciphertext_sha256=r.pull_bytes(SHA256_LENGTH),
            plaintext_sha256=r.pull_bytes(SHA256_LENGTH),
            size=r.pull_uint64(),
        )


@dataclass(frozen=True, slots=True, repr=False)
class FrankedContent:
    """The MLS ``application_data`` of every Doorless application message::

        struct {
          uint8 version = 1;
          opaque salt<V>;                     // exactly 16 random bytes (FRANK-1)
          SenderIdentity sender;
          opaque group_id<V>;                 // the MLS group id
          uint64 sent_at_ms;                  // sender's clock, informational
          opaque media_type<V>;               // e.g. "text/plain;charset=utf-8"
          opaque body<V>;
          AttachmentDescriptor attachments<V>;
        } FrankedContent;

    The franking tag covers the whole encoding, byte for byte (salt included), so every field
    above is committed. The salt is a vector rather than ``opaque salt[16]`` on purpose: a
    wrong-length salt is then detected and rejected by name (FRANK-1) instead of shifting the
    parse. This type is untrusted input; only `verify_received` / `verify_report` vouch for it.
    """

    salt: bytes
    sender: SenderIdentity
    group_id: bytes
    sent_at_ms: int
    media_type: bytes
    body: bytes
    attachments: tuple[AttachmentDescriptor, ...] = ()

    def __post_init__(self) -> None:
        check_uint("sent_at_ms", self.sent_at_ms, MAX_UINT64)

    def __repr__(self) -> str:
        # The salt opens the public tag and the body is plaintext: neither goes into logs.
        return (
            f"FrankedContent(sender={self.sender!r}, group_id={self.group_id.hex()}, "
            f"sent_at_ms={self.sent_at_ms}, media_type={self.media_type!r}, "
            f"body=<{len(self.body)} bytes>, attachments={len(self.attachments)})"
        )

    def push(self, w: Writer) -> None:
        w.push_uint8(FRANKED_CONTENT_VERSION)
        w.push_opaque(self.salt)
        self.sender.push(w)
        w.push_opaque(self.group_id)
        w.push_uint64(self.sent_at_ms)
        w.push_opaque(self.media_type)
        w.push_opaque(self.body)
        w.push_vector(self.attachments, push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version != FRANKED_CONTENT_VERSION:
            raise DecodeError(f"unknown FrankedContent version {version}")
        return cls(
            salt=r.pull_opaque(),
            sender=SenderIdentity.pull(r),
            group_id=r.pull_opaque(),
            sent_at_ms=r.pull_uint64(),
            media_type=r.pull_opaque(),
            body=r.pull_opaque(),
            attachments=tuple(r.pull_vector(AttachmentDescriptor.pull)),
        )


@dataclass(frozen=True, slots=True)
class SafeAADItem:
    """draft-ietf-mls-extensions §4.9::

    struct {
      ComponentID component_id;     // uint16
      opaque aad_item_data<V>;
    } SafeAADItem;
    """

    component_id: int
    aad_item_data: bytes

    def __post_init__(self) -> None:
        check_uint("component_id", self.component_id, 0xFFFF)

    def push(self, w: Writer) -> None:
        w.push_uint16(self.component_id)
        w.push_opaque(self.aad_item_data)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint16(), r.pull_opaque())


@dataclass(frozen=True, slots=True)
class FrankingAAD:
    """The MLS ``authenticated_data`` of a franked message: a Safe AAD (draft-ietf-mls-
    extensions §4.9) holding MIMI's ``frank_aad`` component::

        struct { SafeAADItem aad_items<V>; } SafeAAD;     // sorted by component_id
        struct { uint8 franking_tag[32]; } FrankAAD;      // component 0x0020

    With only the tag it is 36 bytes: ``23 0020 20 <tag>``. Versioning is by component id: a
    different franking format gets a different component. Other Safe AAD components may ride
    along in ``other_items``; on the wire the items are strictly increasing by component id
    (the draft's order, and no duplicates, so the encoding is unique).

    The AAD is in clear in the PrivateMessage (the server reads the tag there) and it is bound
    to the ciphertext: it is part of ``PrivateContentAAD`` and of the sender's signature over
    ``FramedContentTBS`` (RFC 9420 §6.1, §6.3.2).
    """

    franking_tag: bytes
    other_items: tuple[SafeAADItem, ...] = ()

    def __post_init__(self) -> None:
        check_length("franking_tag", self.franking_tag, TAG_LENGTH)
        ids = [item.component_id for item in self.other_items]
        if FRANK_AAD_COMPONENT_ID in ids or len(set(ids)) != len(ids):
            raise ConfigurationError("Safe AAD component ids must be unique")
        # Canonical order (the wire order), so equal AADs compare equal.
        ordered = tuple(sorted(self.other_items, key=lambda i: i.component_id))
        object.__setattr__(self, "other_items", ordered)

    def items(self) -> tuple[SafeAADItem, ...]:
        frank = SafeAADItem(FRANK_AAD_COMPONENT_ID, self.franking_tag)
        return tuple(sorted((*self.other_items, frank), key=lambda i: i.component_id))

    def push(self, w: Writer) -> None:
        w.push_vector(self.items(), push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        items = r.pull_vector(SafeAADItem.pull)
        ids = [item.component_id for item in items]
        if any(a >= b for a, b in pairwise(ids)):
            raise DecodeError("Safe AAD items are not strictly increasing by component id")
        franks = [item for item in items if item.component_id == FRANK_AAD_COMPONENT_ID]
        if not franks:
            raise DecodeError("authenticated_data has no frank_aad component")
        tag = franks[0].aad_item_data
        if len(tag) != TAG_LENGTH:
            raise DecodeError(f"frank_aad holds {len(tag)} bytes, not {TAG_LENGTH}")
        others = tuple(i for i in items if i.component_id != FRANK_AAD_COMPONENT_ID)
        return cls(tag, others)


@dataclass(frozen=True, slots=True)
class ServerFrankingContext:
    """What the server vouches for, beside the tag (MIMI ``ServerFrankingContext``, extended)::

        struct {
          SenderIdentity sender;        // the device the server authenticated
          opaque group_id<V>;
          uint64 accepted_at_ms;        // server clock at acceptance
          uint64 server_seq;            // the server's sequence number in the group
          uint32 key_id;                // which franking key made server_frank
        } ServerFrankingContext;

    No recipient: one frank per message, fanned out to every member. That the reporter was a
    member at ``server_seq`` is checked by the server from its own membership log.
    """

    sender: SenderIdentity
    group_id: bytes
    accepted_at_ms: int
    server_seq: int
    key_id: int

    def __post_init__(self) -> None:
        check_uint("accepted_at_ms", self.accepted_at_ms, MAX_UINT64)
        check_uint("server_seq", self.server_seq, MAX_UINT64)
        check_uint("key_id", self.key_id, MAX_UINT32)

    def push(self, w: Writer) -> None:
        self.sender.push(w)
        w.push_opaque(self.group_id)
        w.push_uint64(self.accepted_at_ms)
        w.push_uint64(self.server_seq)
        w.push_uint32(self.key_id)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            SenderIdentity.pull(r),
            r.pull_opaque(),
            r.pull_uint64(),
            r.pull_uint64(),
            r.pull_uint32(),
        )


@dataclass(frozen=True, slots=True)
class FrankingIntegrityTBS:
    """What the server signs (MIMI ``FrankingIntegrityTBS`` plus the tag)::

        struct {
          opaque franking_tag[32];
          opaque server_frank[32];
          CipherSuite franking_signature_ciphersuite;
          ServerFrankingContext context;
        } FrankingIntegrityTBS;

    MIMI signs only ``server_frank`` and the context; receivers cannot check the HMAC, so a
    frank moved to another message of the same sender in the same group would still verify
    there. Signing the tag too lets a receiver reject a moved frank at once.
    """

    franking_tag: bytes
    server_frank: bytes
    franking_signature_ciphersuite: int
    context: ServerFrankingContext

    def __post_init__(self) -> None:
        check_length("franking_tag", self.franking_tag, TAG_LENGTH)
        check_length("server_frank", self.server_frank, TAG_LENGTH)
        check_uint("franking_signature_ciphersuite", self.franking_signature_ciphersuite, 0xFFFF)

    def push(self, w: Writer) -> None:
        w.push_bytes(self.franking_tag)
        w.push_bytes(self.server_frank)
        w.push_uint16(self.franking_signature_ciphersuite)
        self.context.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            r.pull_bytes(TAG_LENGTH),
            r.pull_bytes(TAG_LENGTH),
            r.pull_uint16(),
            ServerFrankingContext.pull(r),
        )


@dataclass(frozen=True, slots=True)
class ServerFrank:
    """The frank that travels with a delivered message (and inside a report)::

        struct {
          uint64 accepted_at_ms;
          uint64 server_seq;
          uint32 key_id;
          opaque server_frank[32];
          CipherSuite franking_signature_ciphersuite;
          opaque franking_integrity_signature<V>;
        } ServerFrank;

    The sender and group of the context are not carried: receivers rebuild them from the
    decrypted content (checked against MLS), so the frank names no one in clear.
    """

    accepted_at_ms: int
    server_seq: int
    key_id: int
    server_frank: bytes
    franking_signature_ciphersuite: int
    franking_integrity_signature: bytes

    def __post_init__(self) -> None:
        check_uint("accepted_at_ms", self.accepted_at_ms, MAX_UINT64)
        check_uint("server_seq", self.server_seq, MAX_UINT64)
        check_uint("key_id", self.key_id, MAX_UINT32)
        check_length("server_frank", self.server_frank, TAG_LENGTH)
        check_uint("franking_signature_ciphersuite", self.franking_signature_ciphersuite, 0xFFFF)

    def context(self, sender: SenderIdentity, group_id: bytes) -> ServerFrankingContext:
        return ServerFrankingContext(
            sender, group_id, self.accepted_at_ms, self.server_seq, self.key_id
        )

    def push(self, w: Writer) -> None:
        w.push_uint64(self.accepted_at_ms)
        w.push_uint64(self.server_seq)
        w.push_uint32(self.key_id)
        w.push_bytes(self.server_frank)
        w.push_uint16(self.franking_signature_ciphersuite)
        w.push_opaque(self.franking_integrity_signature)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            accepted_at_ms=r.pull_uint64(),
            server_seq=r.pull_uint64(),
            key_id=r.pull_uint32(),
            server_frank=r.pull_bytes(TAG_LENGTH),
            franking_signature_ciphersuite=r.pull_uint16(),
            franking_integrity_signature=r.pull_opaque(),
        )


class ReportReason(IntEnum):
    """``enum { ..., (255) } ReportReason;`` Unknown values do not decode."""

    spam = 1
    harassment = 2
    threat = 3
    sexual_content = 4
    child_safety = 5
    impersonation = 6
    other = 255


@dataclass(frozen=True, slots=True, repr=False)
class AbuseReport:
    """One reported message, as a recipient sends it to the server::

        struct {
          ReportReason reason;          // uint8
          opaque note<V>;               // UTF-8, written by the reporter
          opaque franked_content<V>;    // the application_data exactly as received
          ServerFrank frank;
        } AbuseReport;

    One message per report (DESIGN.md: "one message at a time"). It reveals that message's
    content (body, sender, group, time, salt, attachment keys) and nothing else.
    """

    reason: ReportReason
    note: str
    franked_content: bytes
    frank: ServerFrank

    def __repr__(self) -> str:
        return (
            f"AbuseReport(reason={self.reason.name}, note=<{len(self.note)} chars>, "
            f"franked_content=<{len(self.franked_content)} bytes>, frank={self.frank!r})"
        )

    def push(self, w: Writer) -> None:
        w.push_uint8(self.reason)
        w.push_opaque(self.note.encode("utf-8"))
        w.push_opaque(self.franked_content)
        self.frank.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        raw_reason = r.pull_uint8()
        try:
            reason = ReportReason(raw_reason)
        except ValueError:
            raise DecodeError(f"unknown report reason {raw_reason}") from None
        try:
            note = r.pull_opaque().decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("report note is not UTF-8") from None
        return cls(reason, note, r.pull_opaque(), ServerFrank.pull(r))
