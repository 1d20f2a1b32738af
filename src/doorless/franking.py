"""Message franking: verifiable, recipient-initiated abuse reports (invariant I7).

The construction follows the MIMI protocol draft (§Message Franking, §Report abuse) over the
MLS ``authenticated_data`` as Safe AAD (draft-ietf-mls-extensions §4.9), with the changes listed
in ``docs/franking.md``. In short::

    application_data   = encode(FrankedContent)          # inside the MLS PrivateMessage
    franking_tag       = HMAC-SHA256(key=salt, msg=application_data)     # salt: 16 bytes
    authenticated_data = encode(FrankingAAD)             # SafeAAD with frank_aad (0x0020) = tag
    context            = {sender, group_id, accepted_at_ms, server_seq, key_id}
    server_frank       = HMAC-SHA256(franking_key[key_id], franking_tag || encode(context))
    signature          = SignWithLabel(server_sk, "Doorless FrankingIntegrityTBS",
                                       {franking_tag, server_frank, suite, context})

The sender computes the tag; the server, which authenticates the sending device and sees only
the tag, stamps the message (`stamp`); every receiver checks the content against the tag, the
MLS sender and group, and the server's signature (`verify_received`) and hides the message if
any check fails; a receiver reports a message by revealing its ``application_data`` and frank
(`make_report`); the server recomputes the tag and its own HMAC (`verify_report`).

Everything here is pure: no I/O, no clock, no randomness. Times (milliseconds since the Unix
epoch), salts, keys and nonces are parameters. Rule ids (FRANK-n) are described in
``docs/franking.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Self

from doorless.codec import Reader, Writer, decode, encode, push_struct
from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    InvalidMac,
    InvalidSignature,
    StateError,
    ValidationError,
)
from doorless.secret import Secret, constant_time_equal

# --- constants ---------------------------------------------------------------------------

SALT_LENGTH = 16
"""The franking salt is exactly 16 bytes (MIMI: "a per-message ... random 128-bit salt").

It is the HMAC key of the franking tag, and HMAC keys are ambiguous: a key shorter than the
hash block is zero-padded, so HMAC(k) == HMAC(k || 00), and a key longer than the block (64
bytes for SHA-256) is replaced by its hash, so HMAC(k) == HMAC(SHA-256(k)). With a variable
salt length a sender could commit to one (salt, content) and later open it with another salt;
fixing the length to 16 makes the key the salt itself, with exactly one encoding (FRANK-1).
"""

TAG_LENGTH = 32
FRANKING_KEY_LENGTH = 32
ATTACHMENT_KEY_LENGTH = 32
ATTACHMENT_NONCE_LENGTH = 12
SHA256_LENGTH = 32

FRANK_AAD_COMPONENT_ID = 0x0020
"""``frank_aad`` Safe AAD component (MIMI protocol draft, IANA §frank_aad: 0x0020)."""

FRANKED_CONTENT_VERSION = 1

FRANKING_INTEGRITY_LABEL = b"Doorless FrankingIntegrityTBS"
"""SignWithLabel label (RFC 9420 §5.1.2 adds the "MLS 1.0 " prefix). Not MIMI's
"FrankingIntegrityTBS": our TBS also covers the franking tag, so it must not be confused with
a MIMI signature."""

DEFAULT_SIGNATURE_SUITE = CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

# HMAC-SHA256 and SHA-256 come from MLS suite 1 (pyca / hashlib behind doorless.crypto).
_SHA256_SUITE = cipher_suite(CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
# Attachments use AES-256-GCM; suite 5's AEAD is AES-256-GCM, and going through doorless.crypto
# keeps the pyca error translation (InvalidTag -> DecryptError) at its one boundary.
_ATTACHMENT_AEAD = cipher_suite(CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521)

_MAX_UINT32 = (1 << 32) - 1
_MAX_UINT64 = (1 << 64) - 1


# --- errors ------------------------------------------------------------------------------
#
# Every check a receiver or the server makes raises one of these (or DecodeError for bytes that
# do not parse). A receiver hides a message on any `doorless.errors.RemoteError` from
# `verify_received` and counts it by the error's type.


class InvalidSalt(ValidationError):
    """FRANK-1: the salt is not exactly 16 bytes."""

    def __init__(self, length: int) -> None:
        super().__init__(f"franking salt has {length} bytes, not {SALT_LENGTH}", rule="FRANK-1")


class FrankingTagMismatch(InvalidMac):
    """FRANK-2: the franking tag in the AAD is not the HMAC of the content under its salt."""


class SenderMismatch(ValidationError):
    """FRANK-3: the sender named in the content is not the MLS-authenticated sender."""


class GroupMismatch(ValidationError):
    """FRANK-4: the group named in the content is not the group the message arrived in."""


class FrankSuiteMismatch(ValidationError):
    """FRANK-5: the frank is signed with another cipher suite than the pinned server key."""


class InvalidFrankSignature(InvalidSignature):
    """FRANK-5: the server's franking integrity signature does not verify."""


class ServerFrankMismatch(InvalidMac):
    """FRANK-6: the server frank in a report is not the server's HMAC (a forged report)."""


class UnknownFrankingKey(ValidationError):
    """FRANK-7: a report names a franking key this server never had (forged or foreign)."""


class ReportExpired(ValidationError):
    """FRANK-7: the franking key of a report was deleted; the report can no longer be verified."""


class AttachmentMismatch(ValidationError):
    """FRANK-8: an attachment does not match the hashes and size committed in the content."""


# --- wire structures ---------------------------------------------------------------------


def _check_uint(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ConfigurationError(f"{name} is out of range")


def _check_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ConfigurationError(f"{name} must be {length} bytes, not {len(value)}")


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
        _check_length("attachment key", self.key, ATTACHMENT_KEY_LENGTH)
        _check_length("attachment nonce", self.nonce, ATTACHMENT_NONCE_LENGTH)
        _check_length("ciphertext_sha256", self.ciphertext_sha256, SHA256_LENGTH)
        _check_length("plaintext_sha256", self.plaintext_sha256, SHA256_LENGTH)
        _check_uint("size", self.size, _MAX_UINT64)

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
        _check_uint("sent_at_ms", self.sent_at_ms, _MAX_UINT64)

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
        _check_uint("component_id", self.component_id, 0xFFFF)

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
        _check_length("franking_tag", self.franking_tag, TAG_LENGTH)
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
        _check_uint("accepted_at_ms", self.accepted_at_ms, _MAX_UINT64)
        _check_uint("server_seq", self.server_seq, _MAX_UINT64)
        _check_uint("key_id", self.key_id, _MAX_UINT32)

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
        _check_length("franking_tag", self.franking_tag, TAG_LENGTH)
        _check_length("server_frank", self.server_frank, TAG_LENGTH)
        _check_uint("franking_signature_ciphersuite", self.franking_signature_ciphersuite, 0xFFFF)

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
        _check_uint("accepted_at_ms", self.accepted_at_ms, _MAX_UINT64)
        _check_uint("server_seq", self.server_seq, _MAX_UINT64)
        _check_uint("key_id", self.key_id, _MAX_UINT32)
        _check_length("server_frank", self.server_frank, TAG_LENGTH)
        _check_uint("franking_signature_ciphersuite", self.franking_signature_ciphersuite, 0xFFFF)

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


# --- sender ------------------------------------------------------------------------------


def franking_tag(salt: bytes, application_data: bytes) -> bytes:
    """``HMAC-SHA256(key=salt, msg=application_data)``; raises `InvalidSalt` (FRANK-1)."""
    if len(salt) != SALT_LENGTH:
        raise InvalidSalt(len(salt))
    return _SHA256_SUITE.mac(salt, application_data)


@dataclass(frozen=True, slots=True, repr=False)
class FrankedMessage:
    """What the sender hands to MLS: the PrivateMessage's application data and AAD."""

    application_data: bytes
    authenticated_data: bytes
    franking_tag: bytes

    def __repr__(self) -> str:
        return (
            f"FrankedMessage(<{len(self.application_data)} bytes>, tag={self.franking_tag.hex()})"
        )


def frank_content(
    content: FrankedContent, other_aad_items: tuple[SafeAADItem, ...] = ()
) -> FrankedMessage:
    """Encode ``content`` and compute its tag and AAD. The salt must be fresh random bytes."""
    if len(content.salt) != SALT_LENGTH:
        raise ConfigurationError(f"the franking salt must be {SALT_LENGTH} bytes")
    application_data = encode(content)
    tag = franking_tag(content.salt, application_data)
    return FrankedMessage(application_data, encode(FrankingAAD(tag, other_aad_items)), tag)


def franking_tag_from_aad(authenticated_data: bytes) -> bytes:
    """The tag of a message's ``authenticated_data``; `DecodeError` if it carries none."""
    return decode(FrankingAAD, authenticated_data).franking_tag


# --- server: keys and stamping -----------------------------------------------------------


class FrankingKeySecret(Secret):
    """A server HMAC key for server franks (MIMI's ``hub_key``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FrankingKey:
    """One franking key. ``retired_at_ms`` is None while it is the key that stamps."""

    key_id: int
    key: FrankingKeySecret
    created_at_ms: int
    retired_at_ms: int | None = None

    def __post_init__(self) -> None:
        _check_uint("key_id", self.key_id, _MAX_UINT32)
        if len(self.key) != FRANKING_KEY_LENGTH:
            raise ConfigurationError(f"franking keys are {FRANKING_KEY_LENGTH} bytes")


@dataclass(frozen=True, slots=True)
class FrankingKeyring:
    """The server's franking keys: the newest stamps, older ones only verify reports.

    Key ids are consecutive, so an id between ``first_key_id`` and the current id that is no
    longer held was deleted (`ReportExpired`), and any other id was never issued
    (`UnknownFrankingKey`). A retired key is kept for ``retention_ms`` after its retirement;
    a report made with it is verifiable until then (see ``docs/franking.md``). Operations
    return a new keyring; the caller persists it (stage, then merge).
    """

    retention_ms: int
    first_key_id: int
    keys: tuple[FrankingKey, ...]

    def __post_init__(self) -> None:
        _check_uint("retention_ms", self.retention_ms, _MAX_UINT64)
        if not self.keys or self.keys[-1].retired_at_ms is not None:
            raise ConfigurationError("a keyring holds a current (unretired) key")
        ids = [k.key_id for k in self.keys]
        if ids != sorted(set(ids)) or ids[0] < self.first_key_id:
            raise ConfigurationError("key ids must be increasing and not below first_key_id")
        if any(k.retired_at_ms is None for k in self.keys[:-1]):
            raise ConfigurationError("only the newest key may be unretired")

    @classmethod
    def create(
        cls, key: bytes, *, now_ms: int, retention_ms: int, key_id: int = 0
    ) -> FrankingKeyring:
        """A keyring with one fresh key (``key``: 32 random bytes from the caller)."""
        first = FrankingKey(key_id, FrankingKeySecret(key), now_ms)
        return cls(retention_ms, key_id, (first,))

    @property
    def current(self) -> FrankingKey:
        return self.keys[-1]

    def rotate(self, key: bytes, *, now_ms: int) -> FrankingKeyring:
        """Stamp with ``key`` from now on (id = current id + 1); keep the old key for reports."""
        old = self.current
        if old.key_id == _MAX_UINT32:
            raise StateError("franking key ids are exhausted")
        retired = FrankingKey(old.key_id, old.key, old.created_at_ms, now_ms)
        new = FrankingKey(old.key_id + 1, FrankingKeySecret(key), now_ms)
        return FrankingKeyring(
            self.retention_ms, self.first_key_id, (*self.keys[:-1], retired, new)
        )

    def expire(self, now_ms: int) -> FrankingKeyring:
        """Delete every retired key whose retention period has ended at ``now_ms``."""
        kept = tuple(k for k in self.keys if not self._expired(k, now_ms))
        return FrankingKeyring(self.retention_ms, self.first_key_id, kept)

    def delete(self, key_id: int) -> FrankingKeyring:
        """Delete one retired key now (policy or compromise); reports for it then expire."""
        if key_id == self.current.key_id:
            raise StateError("rotate before deleting the current franking key")
        kept = tuple(k for k in self.keys if k.key_id != key_id)
        return FrankingKeyring(self.retention_ms, self.first_key_id, kept)

    def verifiable_until_ms(self, key_id: int) -> int | None:
        """When reports stamped with ``key_id`` stop verifying: None while the key is current,
        0 when it is not held (deleted or never issued)."""
        key = self._find(key_id)
        if key is None:
            return 0
        return None if key.retired_at_ms is None else key.retired_at_ms + self.retention_ms

    def key_for_report(self, key_id: int, now_ms: int) -> FrankingKey:
        """The key to check a report with; `ReportExpired` / `UnknownFrankingKey` (FRANK-7)."""
        key = self._find(key_id)
        if key is not None and not self._expired(key, now_ms):
            return key
        if self.first_key_id <= key_id <= self.current.key_id:
            raise ReportExpired(
                f"franking key {key_id} has been deleted; reports stamped with it can no "
                "longer be verified",
                rule="FRANK-7",
            )
        raise UnknownFrankingKey(f"no franking key {key_id} was ever issued", rule="FRANK-7")

    def _find(self, key_id: int) -> FrankingKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def _expired(self, key: FrankingKey, now_ms: int) -> bool:
        return key.retired_at_ms is not None and key.retired_at_ms + self.retention_ms <= now_ms


def _server_frank(key: FrankingKey, tag: bytes, context: ServerFrankingContext) -> bytes:
    # The tag has a fixed length, so ``tag || context`` is an unambiguous encoding.
    return _SHA256_SUITE.mac(key.key.value, tag + encode(context))


def stamp(
    tag: bytes,
    *,
    sender: SenderIdentity,
    group_id: bytes,
    accepted_at_ms: int,
    server_seq: int,
    keyring: FrankingKeyring,
    signing_key: bytes,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> ServerFrank:
    """The server's frank for a message it accepted.

    ``sender`` is the device the server authenticated on the submitting connection (never a
    value read from the message); ``tag`` comes from `franking_tag_from_aad`; ``signing_key``
    is the server's franking signature private key for ``signature_suite``.
    """
    _check_length("franking tag", tag, TAG_LENGTH)
    key = keyring.current
    context = ServerFrankingContext(sender, group_id, accepted_at_ms, server_seq, key.key_id)
    server_frank = _server_frank(key, tag, context)
    tbs = FrankingIntegrityTBS(tag, server_frank, signature_suite, context)
    signature = cipher_suite(signature_suite).sign_with_label(
        signing_key, FRANKING_INTEGRITY_LABEL, encode(tbs)
    )
    return ServerFrank(
        accepted_at_ms, server_seq, key.key_id, server_frank, signature_suite, signature
    )


# --- receiver ----------------------------------------------------------------------------


def _open_content(application_data: bytes, expected_tag: bytes) -> FrankedContent:
    """FRANK-1 and FRANK-2: decode, check the salt length, recompute the tag."""
    content = decode(FrankedContent, application_data)
    tag = franking_tag(content.salt, application_data)
    if not constant_time_equal(tag, expected_tag):
        raise FrankingTagMismatch("franking tag does not match the content [FRANK-2]")
    return content


def _verify_frank_signature(
    tag: bytes,
    frank: ServerFrank,
    context: ServerFrankingContext,
    server_public_key: bytes,
    signature_suite: int,
) -> None:
    """FRANK-5: the suite is the pinned one and the integrity signature verifies."""
    if frank.franking_signature_ciphersuite != signature_suite:
        raise FrankSuiteMismatch(
            f"frank signed with suite {frank.franking_signature_ciphersuite}, "
            f"expected {int(signature_suite)}",
            rule="FRANK-5",
        )
    tbs = FrankingIntegrityTBS(
        tag, frank.server_frank, frank.franking_signature_ciphersuite, context
    )
    try:
        cipher_suite(signature_suite).verify_with_label(
            server_public_key,
            FRANKING_INTEGRITY_LABEL,
            encode(tbs),
            frank.franking_integrity_signature,
        )
    except InvalidSignature:
        raise InvalidFrankSignature(
            "the server's franking signature does not verify [FRANK-5]"
        ) from None


def verify_received(
    franked_content: bytes,
    authenticated_data: bytes,
    frank: ServerFrank,
    *,
    server_public_key: bytes,
    mls_sender: SenderIdentity,
    group_id: bytes,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> FrankedContent:
    """Check a decrypted application message before it is shown.

    ``franked_content`` is the PrivateMessage's application data, ``authenticated_data`` its
    AAD, ``mls_sender`` the identity of the sender's MLS leaf credential (already verified by
    MLS), ``group_id`` the MLS group the message was decrypted in, ``server_public_key`` the
    pinned franking signature key. Raises `DecodeError`, `InvalidSalt`, `FrankingTagMismatch`,
    `SenderMismatch`, `GroupMismatch`, `FrankSuiteMismatch` or `InvalidFrankSignature`; the
    caller hides the message and counts it. Store the three inputs to report it later.
    """
    tag = franking_tag_from_aad(authenticated_data)
    content = _open_content(franked_content, tag)
    if content.sender != mls_sender:
        raise SenderMismatch(
            "the sender named in the content is not the MLS sender", rule="FRANK-3"
        )
    if content.group_id != group_id:
        raise GroupMismatch("the content names another group", rule="FRANK-4")
    context = frank.context(content.sender, content.group_id)
    _verify_frank_signature(tag, frank, context, server_public_key, signature_suite)
    return content


# --- attachments -------------------------------------------------------------------------


def seal_attachment(
    plaintext: bytes,
    *,
    key: bytes,
    nonce: bytes,
    locator: bytes = b"",
    media_type: bytes = b"application/octet-stream",
) -> tuple[AttachmentDescriptor, bytes]:
    """Encrypt an attachment (AES-256-GCM, empty AAD) -> (descriptor, ciphertext).

    ``key`` must be fresh random bytes for every attachment (32), ``nonce`` 12 random bytes.
    The descriptor goes into the `FrankedContent`; ``locator`` can be set later with
    `dataclasses.replace` once the ciphertext is stored.
    """
    _check_length("attachment key", key, ATTACHMENT_KEY_LENGTH)
    _check_length("attachment nonce", nonce, ATTACHMENT_NONCE_LENGTH)
    ciphertext = _ATTACHMENT_AEAD.aead_seal(key, nonce, b"", plaintext)
    descriptor = AttachmentDescriptor(
        locator=locator,
        media_type=media_type,
        key=key,
        nonce=nonce,
        ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
        plaintext_sha256=hashlib.sha256(plaintext).digest(),
        size=len(plaintext),
    )
    return descriptor, ciphertext


def open_attachment(descriptor: AttachmentDescriptor, ciphertext: bytes) -> bytes:
    """Decrypt an attachment and check it against the committed hashes and size (FRANK-8).

    Used by receivers before showing an attachment and by the server when it checks a
    reported one. Raises `AttachmentMismatch` or `doorless.errors.DecryptError`.
    """
    if not constant_time_equal(hashlib.sha256(ciphertext).digest(), descriptor.ciphertext_sha256):
        raise AttachmentMismatch("attachment ciphertext hash mismatch", rule="FRANK-8")
    plaintext = _ATTACHMENT_AEAD.aead_open(descriptor.key, descriptor.nonce, b"", ciphertext)
    # The plaintext hash is what makes a salamander (one ciphertext, two keys) useless: only
    # the plaintext the sender committed to can be shown, and it is the one a report reveals.
    if len(plaintext) != descriptor.size:
        raise AttachmentMismatch("attachment size mismatch", rule="FRANK-8")
    if not constant_time_equal(hashlib.sha256(plaintext).digest(), descriptor.plaintext_sha256):
        raise AttachmentMismatch("attachment plaintext hash mismatch", rule="FRANK-8")
    return plaintext


# --- reports -----------------------------------------------------------------------------


def make_report(
    franked_content: bytes,
    authenticated_data: bytes,
    frank: ServerFrank,
    reason: ReportReason,
    note: str = "",
) -> AbuseReport:
    """A recipient's report of one stored message (the three values `verify_received` took).

    Re-checks the salt and tag so a client never sends a report that cannot verify. Only a
    holder of the decrypted content (a recipient) knows the salt that opens the tag.
    """
    _open_content(franked_content, franking_tag_from_aad(authenticated_data))
    return AbuseReport(ReportReason(reason), note, franked_content, frank)


@dataclass(frozen=True, slots=True, repr=False)
class ReceivedFrank:
    """What a receiver keeps with a verified message so it can report it later (the client
    store's ``franking`` blob is ``encode(ReceivedFrank)``)::

        struct {
          opaque application_data<V>;     // the FrankedContent bytes as received
          opaque authenticated_data<V>;   // the MLS authenticated_data (FrankingAAD)
          ServerFrank frank;
        } ReceivedFrank;

    It holds the salt and the plaintext: store it encrypted, like the message itself.
    """

    application_data: bytes
    authenticated_data: bytes
    frank: ServerFrank

    def __repr__(self) -> str:
        return f"ReceivedFrank(<{len(self.application_data)} bytes>, frank={self.frank!r})"

    def push(self, w: Writer) -> None:
        w.push_opaque(self.application_data)
        w.push_opaque(self.authenticated_data)
        self.frank.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_opaque(), ServerFrank.pull(r))

    def report(self, reason: ReportReason, note: str = "") -> AbuseReport:
        """`make_report` for this message."""
        return make_report(self.application_data, self.authenticated_data, self.frank, reason, note)


@dataclass(frozen=True, slots=True, repr=False)
class VerifiedReport:
    """A report whose message the server has proven it delivered, from ``context.sender``."""

    reason: ReportReason
    note: str
    content: FrankedContent
    context: ServerFrankingContext
    franking_tag: bytes

    def __repr__(self) -> str:
        return (
            f"VerifiedReport(reason={self.reason.name}, sender={self.context.sender!r}, "
            f"group_id={self.context.group_id.hex()}, server_seq={self.context.server_seq})"
        )

    @property
    def sender(self) -> SenderIdentity:
        return self.context.sender

    @property
    def group_id(self) -> bytes:
        return self.context.group_id


def verify_report(
    report: AbuseReport,
    keyring: FrankingKeyring,
    *,
    server_public_key: bytes,
    now_ms: int,
    group_id: bytes | None = None,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> VerifiedReport:
    """The server's check of a report: the tag, its own HMAC over (tag, context), and its own
    signature (so the accepted frank is byte for byte the one receivers verified).

    The context is rebuilt from the revealed content (sender, group) and the frank (time,
    sequence number, key id), so a frank moved to another message or group, any edited field,
    or a frank made without the server key fails (`ServerFrankMismatch`). ``group_id``, when
    given, is the group the report was filed under. ``server_public_key`` is the franking
    signature key that was pinned when the message was stamped. Raises `DecodeError`,
    `InvalidSalt`, `FrankingTagMismatch`, `GroupMismatch`, `ReportExpired`,
    `UnknownFrankingKey`, `ServerFrankMismatch`, `FrankSuiteMismatch` or
    `InvalidFrankSignature`. The server then checks from its membership log that the reporter
    was a member of the group at ``context.server_seq``.
    """
    content = decode(FrankedContent, report.franked_content)
    tag = franking_tag(content.salt, report.franked_content)
    if group_id is not None and content.group_id != group_id:
        raise GroupMismatch("the reported message belongs to another group", rule="FRANK-4")
    key = keyring.key_for_report(report.frank.key_id, now_ms)
    context = report.frank.context(content.sender, content.group_id)
    if not constant_time_equal(_server_frank(key, tag, context), report.frank.server_frank):
        raise ServerFrankMismatch("the server frank is not ours [FRANK-6]")
    _verify_frank_signature(tag, report.frank, context, server_public_key, signature_suite)
    return VerifiedReport(report.reason, report.note, content, context, tag)


# Decoders of this module, for property tests and tooling.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "SenderIdentity": lambda b: decode(SenderIdentity, b),
    "AttachmentDescriptor": lambda b: decode(AttachmentDescriptor, b),
    "FrankedContent": lambda b: decode(FrankedContent, b),
    "SafeAADItem": lambda b: decode(SafeAADItem, b),
    "FrankingAAD": lambda b: decode(FrankingAAD, b),
    "ServerFrankingContext": lambda b: decode(ServerFrankingContext, b),
    "FrankingIntegrityTBS": lambda b: decode(FrankingIntegrityTBS, b),
    "ServerFrank": lambda b: decode(ServerFrank, b),
    "AbuseReport": lambda b: decode(AbuseReport, b),
    "ReceivedFrank": lambda b: decode(ReceivedFrank, b),
}

__all__ = [
    "DECODERS",
    "FRANK_AAD_COMPONENT_ID",
    "SALT_LENGTH",
    "AbuseReport",
    "AttachmentDescriptor",
    "AttachmentMismatch",
    "FrankSuiteMismatch",
    "FrankedContent",
    "FrankedMessage",
    "FrankingAAD",
    "FrankingIntegrityTBS",
    "FrankingKey",
    "FrankingKeySecret",
    "FrankingKeyring",
    "FrankingTagMismatch",
    "GroupMismatch",
    "InvalidFrankSignature",
    "InvalidSalt",
    "ReceivedFrank",
    "ReportExpired",
    "ReportReason",
    "SafeAADItem",
    "SenderIdentity",
    "SenderMismatch",
    "ServerFrank",
    "ServerFrankMismatch",
    "ServerFrankingContext",
    "UnknownFrankingKey",
    "VerifiedReport",
    "frank_content",
    "franking_tag",
    "franking_tag_from_aad",
    "make_report",
    "open_attachment",
    "seal_attachment",
    "stamp",
    "verify_received",
    "verify_report",
]
